//! Fuzzing the JSONata parser with proptest (bounded case counts; raise them with
//! `PROPTEST_CASES`): token soup and arbitrary text are parsed or refused with an error, never
//! a panic or a stack overflow, however deep the nesting.

use proptest::prelude::*;
use upsell_jsonata::Expression;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            ".",
            ",",
            ";",
            ":",
            "?",
            "??",
            "?:",
            "+",
            "-",
            "*",
            "/",
            "%",
            "&",
            "=",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "~>",
            "..",
            ":=",
            "$",
            "$$",
            "@",
            "#",
            "^(",
            "|",
            "**",
            "function",
            "λ",
            "and",
            "or",
            "in",
            "true",
            "false",
            "null",
            "$x",
            "$sum",
            "$states",
            "$partition",
            "\"s\"",
            "'q'",
            "`b`",
            "1",
            "2.5e3",
            "-0",
            "a",
            "b.c",
            "/re/i",
            " ",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9$]{1,6}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_soup_is_parsed_or_refused(tokens in prop::collection::vec(token(), 0..40)) {
        let _ = Expression::parse(&tokens.concat());
    }

    #[test]
    fn any_text_is_parsed_or_refused(t in ".{0,200}") {
        let _ = Expression::parse(&t);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in ["(", "[", "{\"a\":", "-", "$f(", "a.("] {
        let src = open.repeat(100_000);
        assert!(Expression::parse(&src).is_err(), "{open}");
    }
}
