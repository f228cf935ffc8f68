// SwiftPM builds a C target only from at least one source file; the header is all there is.
#include "build_info.h"
