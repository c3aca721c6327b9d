//! Declaration mistakes are compile errors with readable messages.
//! Expected messages live in `tests/ui/*.stderr`; regenerate them with
//! `TRYBUILD=overwrite cargo test --test compile_fail` and review the diff.

#[test]
fn declaration_mistakes_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // What `tz = "..."` may name depends on the `tz` feature.
    #[cfg(feature = "tz")]
    t.compile_fail("tests/ui/tz/*.rs");
    #[cfg(not(feature = "tz"))]
    t.compile_fail("tests/ui/no_tz/*.rs");
}
