// Swift names: a function with an argument label and a method, named by the Swift runtime's demangler
// (`swift_names.check(order: swift_names.Order) -> Swift.Bool`). Prints how many times it called
// each: "calls check 7".
struct Order {
    var quantity: Int

    @inline(never)
    func weight() -> Int { quantity * 3 }
}

@inline(never)
func check(order: Order) -> Bool { order.quantity > 0 }

var checks = 0, weights = 0, weight = 0
for quantity in -2..<5 {
    let order = Order(quantity: quantity)
    checks += 1
    if check(order: order) {
        weights += 1
        weight += order.weight()
    }
}
print("weight \(weight)")
print("calls check \(checks)")
print("calls weight \(weights)")
