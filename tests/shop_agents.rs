//! The shop example's own tests (at the end of `examples/shop/main.rs`):
//! the test kit drives its mailer and stock, in-process and on Redis.
//! They are compiled here because an example marked `test = true` is built
//! only as a test harness, and `tests/shop.rs` runs the program itself.

#[allow(dead_code)]
#[path = "../examples/shop/main.rs"]
mod shop;
