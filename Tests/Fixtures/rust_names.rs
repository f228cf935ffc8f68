// Rust names: a module function and a method, mangled as legacy (`_ZN…17h<hash>E`) or v0 (`_R…`)
// symbols depending on `-C symbol-mangling-version`. Prints how many times it called each,
// "calls check 7": the method's demangled name depends on the mangling (v0
// `<rust_names::shop::Order>::weight`, legacy `rust_names::shop::Order::weight`).
mod shop {
    pub struct Order {
        pub quantity: i32,
    }

    impl Order {
        #[inline(never)]
        pub fn weight(&self) -> i64 {
            i64::from(self.quantity) * 3
        }
    }

    #[inline(never)]
    pub fn check(order: &Order) -> bool {
        order.quantity > 0
    }
}

fn main() {
    let (mut checks, mut weights, mut accepted, mut weight) = (0, 0, 0, 0i64);
    for quantity in -2..5 {
        let order = std::hint::black_box(shop::Order { quantity });
        checks += 1;
        if shop::check(&order) {
            accepted += 1;
            weights += 1;
            weight += order.weight();
        }
    }
    println!("accepted {} weight {}", accepted, weight);
    println!("calls check {}", checks);
    println!("calls weight {}", weights);
}
