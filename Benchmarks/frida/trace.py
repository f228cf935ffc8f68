#!/usr/bin/env python3
"""Counts calls and returns of functions with frida's Interceptor, for nstrace-bench.

    trace.py --mode js|cmodule --offset 0x1690 -- PROGRAM ARGS...     launch (spawn) mode
    trace.py --mode js|cmodule --export libc.so.6:read -p PID           attach mode, until SIGINT

--offset is an address in the main program as the ELF file gives it (nstrace-bench passes the
function's link-time address: the workload's functions are not exported, and a PIE's load base is
added here); --export names an exported function of a loaded module. Both may be repeated.

Every entry and every return is counted inside the process: by JavaScript callbacks (--mode js),
or by C callbacks compiled by frida's CModule, counting with an atomic add (--mode cmodule). The
counts are printed at the end, one line per function:

    nsb-frida TARGET entries N returns M

In launch mode the counts are collected when the program calls exit() (its own timing is written
before that); in attach mode when this driver gets SIGINT or SIGTERM, after which it detaches and
leaves the process running; a repeated SIGINT is the same request (now and then the first one is
not seen here, and nstrace-bench sends it again). Exits non-zero when it could not attach or
collect the counts. kill -USR1 prints where its Python threads are.
"""
import argparse
import faulthandler
import json
import os
import select
import signal
import sys
import threading

import frida

# The counters: two 32-bit words per function (entries, returns), in memory the script allocates.
# The C callbacks find their function's pair through the listener's function data.
CMODULE_SOURCE = r"""
#include <gum/guminterceptor.h>

void onEnter(GumInvocationContext *ic) {
    gint *pair = GUM_IC_GET_FUNC_DATA(ic, gint *);
    g_atomic_int_add(&pair[0], 1);
}

void onLeave(GumInvocationContext *ic) {
    gint *pair = GUM_IC_GET_FUNC_DATA(ic, gint *);
    g_atomic_int_add(&pair[1], 1);
}
"""

AGENT_SOURCE = r"""
const targets = %(targets)s;
const mode = %(mode)s;
const launch = %(launch)s;

function resolve(t) {
    if (t.offset !== undefined) return Process.mainModule.base.add(t.offset);
    return Process.getModuleByName(t.module).getExportByName(t.name);
}

const counters = Memory.alloc(8 * targets.length);
const jsCounts = targets.map(() => [0, 0]);
const cm = mode === 'cmodule' ? new CModule(%(csource)s) : null;

targets.forEach((t, i) => {
    const address = resolve(t);
    if (cm !== null) {
        Interceptor.attach(address, cm, counters.add(8 * i));
    } else {
        const c = jsCounts[i];
        Interceptor.attach(address, {
            onEnter() { c[0]++; },
            onLeave() { c[1]++; },
        });
    }
});

function counts() {
    return targets.map((t, i) => cm !== null
        ? [counters.add(8 * i).readS32(), counters.add(8 * i + 4).readS32()]
        : jsCounts[i]);
}

rpc.exports = { counts };
send({ type: 'ready' });

if (launch) {
    // The program's last moment: hand the counts over and wait until the driver has them.
    Interceptor.attach(Process.getModuleByName('libc.so.6').getExportByName('exit'), {
        onEnter() {
            send({ type: 'counts', counts: counts() });
            recv('ack', () => {}).wait();
        },
    });
}
"""


def parse_target(kind, text):
    if kind == 'offset':
        return {'label': text, 'offset': int(text, 16)}
    module, sep, name = text.partition(':')
    if not sep or not module or not name:
        raise argparse.ArgumentTypeError('--export takes MODULE:NAME, e.g. libc.so.6:read')
    return {'label': name, 'module': module, 'name': name}


def report(targets, counts):
    for t, (entries, returns) in zip(targets, counts):
        print(f"nsb-frida {t['label']} entries {entries} returns {returns}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mode', choices=['js', 'cmodule'], required=True)
    parser.add_argument('--offset', action='append', default=[], help='hex address in the main program')
    parser.add_argument('--export', action='append', default=[], help='MODULE:NAME')
    parser.add_argument('-p', '--pid', type=int, help='attach to this process')
    parser.add_argument('program', nargs='*', help='the program to launch, after --')
    args = parser.parse_args()

    try:
        targets = [parse_target('offset', o) for o in args.offset] + [parse_target('export', e) for e in args.export]
    except (ValueError, argparse.ArgumentTypeError) as e:
        parser.error(str(e))
    if not targets:
        parser.error('name at least one function with --offset or --export')
    if (args.pid is None) == (not args.program):
        parser.error('either -p PID or a program after --')

    # kill -USR1 prints where every Python thread is: for a driver that does not finish.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    launch = args.pid is None
    # In attach mode, SIGINT (or SIGTERM, SIGHUP) is the request to report and detach, at whatever
    # point it comes, read from a wakeup pipe that the C-level handler writes to in whichever thread
    # the signal lands; the Python-level handler does nothing, so a repeated signal during the
    # detach is harmless. Now and then (2-12% of runs here) the first SIGINT after attaching never
    # reaches the handler at all, cause not found; nstrace-bench sends it again every second.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    wakeup_read, wakeup_write = os.pipe()
    if not launch:
        os.set_blocking(wakeup_write, False)
        for s in stop_signals:
            signal.signal(s, lambda *_: None)
        signal.set_wakeup_fd(wakeup_write)

    device = frida.get_local_device()
    pid = device.spawn(args.program) if launch else args.pid
    session = device.attach(pid)

    ready = threading.Event()
    gone = threading.Event()
    failed = []
    result = {}

    def on_message(message, _data):
        payload = message.get('payload') if message['type'] == 'send' else None
        if isinstance(payload, dict) and payload.get('type') == 'ready':
            ready.set()
        elif isinstance(payload, dict) and payload.get('type') == 'counts':
            result['counts'] = payload['counts']
            script.post({'type': 'ack'})
        elif message['type'] == 'error':
            failed.append(message.get('description'))
            ready.set()

    def on_detached(reason, _crash):
        result['detached'] = reason
        gone.set()

    session.on('detached', on_detached)
    source = AGENT_SOURCE % {
        'targets': json.dumps([{k: v for k, v in t.items() if k != 'label'} for t in targets]),
        'mode': json.dumps(args.mode),
        'launch': 'true' if launch else 'false',
        'csource': json.dumps(CMODULE_SOURCE),
    }
    script = session.create_script(source)
    script.on('message', on_message)
    script.load()
    # Every Interceptor.attach has run (or one failed) before the script's last line says so.
    if not ready.wait(30) or failed:
        print(f"nsb-frida: the script failed: {failed[0] if failed else 'no answer in 30 s'}", file=sys.stderr, flush=True)
        if launch:
            device.kill(pid)
        else:
            session.detach()
        return 1
    print('nsb-frida ready', file=sys.stderr, flush=True)

    if launch:
        device.resume(pid)
        gone.wait()
        if 'counts' not in result:
            print(f"nsb-frida: no counts: {result.get('detached')}", file=sys.stderr)
            return 1
        report(targets, result['counts'])
        return 0

    while not gone.is_set():
        readable, _, _ = select.select([wakeup_read], [], [], 0.2)
        if readable and set(os.read(wakeup_read, 64)) & set(int(s) for s in stop_signals):
            break
    if gone.is_set():
        print(f"nsb-frida: the process went away: {result.get('detached')}", file=sys.stderr)
        return 1
    counts = script.exports_sync.counts()
    script.unload()
    session.detach()
    report(targets, counts)
    return 0


if __name__ == '__main__':
    sys.exit(main())
