//! Runs the cases against orchestrix with its default features.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("cases/fail/*.rs");
    cases.pass("cases/pass/*.rs");
}
