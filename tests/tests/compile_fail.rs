//! Typed clients and implementations are checked by the compiler: a wrong
//! argument or result type at a call site, or a missing method in an
//! implementation, does not build (each case in `tests/compile_fail/`,
//! with the compiler's message it must produce).

#[test]
fn typed_interfaces_refuse_wrong_types_and_missing_methods_at_compile_time() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("compile_fail/*.rs");
}
