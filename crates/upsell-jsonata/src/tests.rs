//! Data-driven tests: (expression, input, expected) tables for operators and functions, and
//! error cases with their JSONata codes.

use serde_json::{Value, json};

use crate::{Env, Error, Expression};

fn doc() -> Value {
    json!({
        "name": "Ada",
        "age": 36,
        "tags": ["a", "b", "c"],
        "one": [5],
        "nums": [3, 1, 2],
        "nested": {"x": {"y": 1}, "arr": [[1, 2], [3]]},
        "orders": [
            {"id": "o1", "price": 10, "qty": 2, "cat": "tools", "items": [{"sku": "A"}, {"sku": "B"}]},
            {"id": "o2", "price": 5.5, "qty": 1, "cat": "paint", "items": [{"sku": "C"}]},
            {"id": "o3", "price": 1, "qty": 10, "cat": "tools", "items": []}
        ],
        "empty": [],
        "nothing": null,
        "flag": true,
        "text": "  hello   world  "
    })
}

fn env() -> Env {
    let mut env = Env::new().with_step_functions_extensions();
    env.bind("v", json!({"a": [1, 2], "s": "str"}));
    env.bind("n", json!(4));
    env
}

fn run(expr: &str, input: &Value) -> Result<Option<Value>, Error> {
    Expression::parse(expr)?.evaluate(input, &env())
}

/// `None` expected means undefined.
fn check(cases: &[(&str, Option<Value>)]) {
    let input = doc();
    let mut failures = Vec::new();
    for (expr, expected) in cases {
        match run(expr, &input) {
            Ok(got) if got == *expected => {}
            other => failures.push(format!(
                "{expr}\n   expected {expected:?}\n   got      {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn literals_and_paths() {
    check(&[
        ("'string'", Some(json!("string"))),
        ("\"dq\\n\\u00e9\"", Some(json!("dq\né"))),
        ("1", Some(json!(1))),
        ("1.5e2", Some(json!(150))),
        ("-3.25", Some(json!(-3.25))),
        ("true", Some(json!(true))),
        ("null", Some(json!(null))),
        ("[1, 'two', 3]", Some(json!([1, "two", 3]))),
        ("[]", Some(json!([]))),
        ("{'foo': 'bar'}", Some(json!({"foo": "bar"}))),
        ("name", Some(json!("Ada"))),
        ("missing", None),
        ("missing.deeper", None),
        ("nested.x.y", Some(json!(1))),
        ("nested.`x`.y", Some(json!(1))),
        ("tags", Some(json!(["a", "b", "c"]))),
        ("one", Some(json!([5]))),
        ("one[]", Some(json!([5]))),
        ("orders.id", Some(json!(["o1", "o2", "o3"]))),
        ("orders.items.sku", Some(json!(["A", "B", "C"]))),
        ("orders[0].id", Some(json!("o1"))),
        ("orders[-1].id", Some(json!("o3"))),
        ("orders[price > 2].id", Some(json!(["o1", "o2"]))),
        ("orders[price > 6].id", Some(json!("o1"))),
        ("orders[price > 6].id[]", Some(json!(["o1"]))),
        ("orders[cat = 'paint'].items[0].sku", Some(json!("C"))),
        ("orders[[0, 2]].id", Some(json!(["o1", "o3"]))),
        ("tags[1]", Some(json!("b"))),
        ("tags[9]", None),
        ("nested.arr[0]", Some(json!([1, 2]))),
        ("nested.arr[1][0]", Some(json!(3))),
        ("nested.*", Some(json!([{"y": 1}, 1, 2, 3]))),
        ("nested.*.y", Some(json!(1))),
        ("nested.**.y", Some(json!(1))),
        ("$", Some(doc())),
        ("$$.name", Some(json!("Ada"))),
        ("$.name", Some(json!("Ada"))),
        ("orders.$.id", Some(json!(["o1", "o2", "o3"]))),
        ("$v.a", Some(json!([1, 2]))),
        ("$v.s", Some(json!("str"))),
        ("$v.a[1]", Some(json!(2))),
        ("$doesNotExist", None),
        ("empty", Some(json!([]))),
        ("empty[0]", None),
        ("nothing", Some(json!(null))),
        ("orders.(price * qty)", Some(json!([20, 5.5, 10]))),
        (
            "orders.[id, cat]",
            Some(json!([["o1", "tools"], ["o2", "paint"], ["o3", "tools"]])),
        ),
        (
            "orders.{'id': id}",
            Some(json!([{"id": "o1"}, {"id": "o2"}, {"id": "o3"}])),
        ),
        ("[orders.id]", Some(json!(["o1", "o2", "o3"]))),
        ("[[1,2],[3]]", Some(json!([[1, 2], [3]]))),
        ("[1..4]", Some(json!([1, 2, 3, 4]))),
        ("[0, 2..3]", Some(json!([0, 2, 3]))),
        ("[3..1]", Some(json!([]))),
        ("/* comment */ name", Some(json!("Ada"))),
    ]);
}

#[test]
fn operators() {
    check(&[
        ("1 + 2 * 3", Some(json!(7))),
        ("(1 + 2) * 3", Some(json!(9))),
        ("7 % 3", Some(json!(1))),
        ("1 / 4", Some(json!(0.25))),
        ("0.1 + 0.2", Some(json!(0.30000000000000004))),
        ("-age", Some(json!(-36))),
        ("age + missing", None),
        ("age = 36", Some(json!(true))),
        ("age != 36", Some(json!(false))),
        ("missing = missing", Some(json!(false))),
        ("'a' < 'b'", Some(json!(true))),
        ("age >= 20 and age < 30", Some(json!(false))),
        ("age >= 20 or missing", Some(json!(true))),
        ("missing < 3", None),
        ("name & ' ' & age", Some(json!("Ada 36"))),
        ("'x' & missing", Some(json!("x"))),
        ("'b' in tags", Some(json!(true))),
        ("'z' in tags", Some(json!(false))),
        ("[1,2] = [1,2]", Some(json!(true))),
        ("{'a':1} = {'a':1}", Some(json!(true))),
        ("age > 30 ? 'old' : 'young'", Some(json!("old"))),
        ("age > 90 ? 'old'", None),
        ("missing ?? 'default'", Some(json!("default"))),
        ("name ?? 'default'", Some(json!("Ada"))),
        ("'' ?: 'fallback'", Some(json!("fallback"))),
        ("($x := 3; $x * $x)", Some(json!(9))),
        ("($x := 1; ($x := 2); $x)", Some(json!(1))),
        ("$variable := 1", Some(json!(1))),
        ("nothing = null", Some(json!(true))),
        ("flag and true", Some(json!(true))),
        ("$sum(orders.price) + $n", Some(json!(20.5))),
        ("\"hello$world\" = 'hello$world'", Some(json!(true))),
    ]);
}

#[test]
fn functions_and_lambdas() {
    check(&[
        ("($f := function($x){$x * 2}; $f(21))", Some(json!(42))),
        ("(λ($x, $y){$x + $y})(1, 2)", Some(json!(3))),
        (
            "($fact := function($n){$n <= 1 ? 1 : $n * $fact($n - 1)}; $fact(10))",
            Some(json!(3628800)),
        ),
        (
            "($add := function($a){function($b){$a + $b}}; $add(2)(3))",
            Some(json!(5)),
        ),
        (
            "($f := $substring(?, 0, 2); $f('hello'))",
            Some(json!("he")),
        ),
        ("'hello' ~> $uppercase()", Some(json!("HELLO"))),
        ("'hello' ~> $substring(1, 2)", Some(json!("el"))),
        (
            "($up := $uppercase ~> $trim; $up('  a b '))",
            Some(json!("A B")),
        ),
        (
            "$map([1,2,3], function($v){$v * 10})",
            Some(json!([10, 20, 30])),
        ),
        (
            "$map([1,2,3], function($v, $i){$i})",
            Some(json!([0, 1, 2])),
        ),
        ("$map([1], function($v){$v})", Some(json!(1))),
        (
            "$map([1,0,1], function($v) { $v = 1 ? 'pass' : 'failed' })",
            Some(json!(["pass", "failed", "pass"])),
        ),
        ("$map(nums, $string)", Some(json!(["3", "1", "2"]))),
        ("$filter(nums, function($v){$v > 1})", Some(json!([3, 2]))),
        ("$reduce(nums, function($a, $b){$a + $b})", Some(json!(6))),
        (
            "$reduce(nums, function($a, $b){$a + $b}, 10)",
            Some(json!(16)),
        ),
        (
            "$single(orders, function($o){$o.id = 'o2'}).price",
            Some(json!(5.5)),
        ),
        ("$sort(nums)", Some(json!([1, 2, 3]))),
        (
            "$sort(orders, function($a, $b){$a.price > $b.price}).id",
            Some(json!(["o3", "o2", "o1"])),
        ),
        ("orders^(price).id", Some(json!(["o3", "o2", "o1"]))),
        ("orders^(>qty, id).id", Some(json!(["o3", "o1", "o2"]))),
        (
            "orders{cat: $sum(price)}",
            Some(json!({"tools": 11, "paint": 5.5})),
        ),
        (
            "orders{cat: id}",
            Some(json!({"tools": ["o1", "o3"], "paint": "o2"})),
        ),
        (
            "$each({'a': 1, 'b': 2}, function($v, $k){$k & $v})",
            Some(json!(["a1", "b2"])),
        ),
        (
            "$sift({'a': 1, 'b': 2}, function($v){$v > 1})",
            Some(json!({"b": 2})),
        ),
        ("$keys({'a': 1, 'b': 2})", Some(json!(["a", "b"]))),
        (
            "$keys(orders[0])",
            Some(json!(["id", "price", "qty", "cat", "items"])),
        ),
        ("$lookup({'a': 1}, 'a')", Some(json!(1))),
        (
            "$spread({'a': 1, 'b': 2})",
            Some(json!([{"a": 1}, {"b": 2}])),
        ),
        (
            "$merge([{'a': 1}, {'b': 2}, {'a': 3}])",
            Some(json!({"a": 3, "b": 2})),
        ),
        ("$count(tags)", Some(json!(3))),
        ("$count(missing)", Some(json!(0))),
        ("$count($states.result[$ = 1])", Some(json!(0))),
        ("$append([1,2], 3)", Some(json!([1, 2, 3]))),
        ("$append(missing, [1])", Some(json!([1]))),
        ("$reverse(nums)", Some(json!([2, 1, 3]))),
        ("$count($shuffle(nums))", Some(json!(3))),
        ("$distinct([1, 2, 1, 'a', 'a'])", Some(json!([1, 2, "a"]))),
        (
            "$zip([1,2,3], ['a','b'])",
            Some(json!([[1, "a"], [2, "b"]])),
        ),
        ("$type(tags)", Some(json!("array"))),
        ("$type(missing)", None),
        ("$type(function(){1})", Some(json!("function"))),
        ("$exists(missing)", Some(json!(false))),
        ("$exists(nothing)", Some(json!(true))),
        ("$boolean([])", Some(json!(false))),
        ("$boolean('0')", Some(json!(true))),
        ("$not(age = 36)", Some(json!(false))),
        ("$assert(true, 'x')", None),
    ]);
}

#[test]
fn string_functions() {
    check(&[
        ("$string(1.0)", Some(json!("1"))),
        ("$string(0.1 + 0.2)", Some(json!("0.3"))),
        (
            "$string({'a': [1, true, null]})",
            Some(json!("{\"a\":[1,true,null]}")),
        ),
        ("$string([1,2], true)", Some(json!("[\n  1,\n  2\n]"))),
        ("$string(1e21)", Some(json!("1e+21"))),
        ("$length('héllo')", Some(json!(5))),
        ("$substring('hello world', 3)", Some(json!("lo world"))),
        ("$substring('hello world', 3, 5)", Some(json!("lo wo"))),
        ("$substring('hello world', -4)", Some(json!("orld"))),
        ("$substring('hello world', -4, 2)", Some(json!("or"))),
        ("$substringBefore('hello world', ' ')", Some(json!("hello"))),
        ("$substringAfter('hello world', ' ')", Some(json!("world"))),
        ("$substringAfter('hello', 'z')", Some(json!("hello"))),
        ("$uppercase(name)", Some(json!("ADA"))),
        ("$lowercase('ÀB')", Some(json!("àb"))),
        ("$trim(text)", Some(json!("hello world"))),
        ("$pad('x', 3)", Some(json!("x  "))),
        ("$pad('x', -3, '#')", Some(json!("##x"))),
        ("$contains('hello$world', /^hello\\$/)", Some(json!(true))),
        (
            "$contains(\"hello$world\", /^hello\\ /)",
            Some(json!(false)),
        ),
        ("$contains('abc', 'b')", Some(json!(true))),
        ("$contains('ABC', /b/i)", Some(json!(true))),
        ("$split('a,b,c', ',')", Some(json!(["a", "b", "c"]))),
        ("$split('a,b,c', ',', 2)", Some(json!(["a", "b"]))),
        ("$split('a1b22c', /[0-9]+/)", Some(json!(["a", "b", "c"]))),
        ("$split('abc', '')", Some(json!(["a", "b", "c"]))),
        ("$join(tags, '-')", Some(json!("a-b-c"))),
        ("$join(tags)", Some(json!("abc"))),
        (
            "$match('ab12cd345', /[0-9]+/).match",
            Some(json!(["12", "345"])),
        ),
        (
            "$match('ab12', /([a-z]+)([0-9]+)/).groups",
            Some(json!(["ab", "12"])),
        ),
        (
            "$replace('hello world', 'o', '0')",
            Some(json!("hell0 w0rld")),
        ),
        (
            "$replace('hello world', 'o', '0', 1)",
            Some(json!("hell0 world")),
        ),
        (
            "$replace('John Smith', /(\\w+)\\s(\\w+)/, '$2, $1')",
            Some(json!("Smith, John")),
        ),
        (
            "$replace('a1b2', /[0-9]/, function($m){'<' & $m.match & '>'})",
            Some(json!("a<1>b<2>")),
        ),
        ("$replace('price $5', /\\$/, '$$')", Some(json!("price $5"))),
        (
            "$base64encode('hello:world')",
            Some(json!("aGVsbG86d29ybGQ=")),
        ),
        (
            "$base64decode('aGVsbG86d29ybGQ=')",
            Some(json!("hello:world")),
        ),
        ("$encodeUrlComponent('a b&c')", Some(json!("a%20b%26c"))),
        (
            "$encodeUrl('https://x.com/a b?q=1')",
            Some(json!("https://x.com/a%20b?q=1")),
        ),
        ("$decodeUrlComponent('a%20b%26c')", Some(json!("a b&c"))),
        ("tags.$uppercase()", Some(json!(["A", "B", "C"]))),
        ("name.$length()", Some(json!(3))),
        ("$eval('1 + $$.age')", Some(json!(37))),
    ]);
}

#[test]
fn numeric_functions() {
    check(&[
        ("$number('2')", Some(json!(2))),
        ("$number('-1.5e1')", Some(json!(-15))),
        ("$number('0x10')", Some(json!(16))),
        ("$number(true)", Some(json!(1))),
        ("$number(missing)", None),
        ("$abs(-3)", Some(json!(3))),
        ("$floor(3.7)", Some(json!(3))),
        ("$ceil(3.2)", Some(json!(4))),
        ("$round(2.5)", Some(json!(2))),
        ("$round(3.5)", Some(json!(4))),
        ("$round(-2.5)", Some(json!(-2))),
        ("$round(1.005, 2)", Some(json!(1))),
        ("$round(1.015, 2)", Some(json!(1.02))),
        ("$round(1234.5678, -2)", Some(json!(1200))),
        ("$power(2, 10)", Some(json!(1024))),
        ("$sqrt(16)", Some(json!(4))),
        ("$sum(nums)", Some(json!(6))),
        ("$sum([])", Some(json!(0))),
        ("$sum(5)", Some(json!(5))),
        ("$max(nums)", Some(json!(3))),
        ("$min(nums)", Some(json!(1))),
        ("$max([])", None),
        ("$average(nums)", Some(json!(2))),
        ("$formatBase(255, 16)", Some(json!("ff"))),
        ("$formatBase(5, 2)", Some(json!("101"))),
        (
            "$formatNumber(1234.5678, '#,##0.00')",
            Some(json!("1,234.57")),
        ),
        ("$formatNumber(0.5, '0%')", Some(json!("50%"))),
        ("$formatNumber(12, '000')", Some(json!("012"))),
        ("$formatNumber(3.1, '0.0##')", Some(json!("3.1"))),
        ("$formatInteger(42, '0000')", Some(json!("0042"))),
        ("$formatInteger(1999, 'I')", Some(json!("MCMXCIX"))),
        ("$random() < 1", Some(json!(true))),
    ]);
}

#[test]
fn date_functions() {
    check(&[
        ("$toMillis('1970-01-01T00:00:01.500Z')", Some(json!(1500))),
        (
            "$toMillis('2017-11-07T15:07:54.972Z')",
            Some(json!(1510067274972u64)),
        ),
        ("$toMillis('2017-11-07')", Some(json!(1510012800000u64))),
        (
            "$toMillis('2017-11-07T15:07:54+01:00')",
            Some(json!(1510063674000u64)),
        ),
        (
            "$fromMillis(1510067274972)",
            Some(json!("2017-11-07T15:07:54.972Z")),
        ),
        (
            "$fromMillis(1510067274972, '[Y0001]-[M01]-[D01]')",
            Some(json!("2017-11-07")),
        ),
        (
            "$fromMillis(1510067274972, '[H01]:[m01]:[s01] [Z]', '+0130')",
            Some(json!("16:37:54 +01:30")),
        ),
        (
            "$fromMillis(1510067274972, '[FNn], [D1] [MNn] [Y]')",
            Some(json!("Tuesday, 7 November 2017")),
        ),
        (
            "$fromMillis(1510067274972, '[h]:[m01] [P]')",
            Some(json!("3:07 pm")),
        ),
        (
            "$fromMillis(0, '[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]', '+0000')",
            Some(json!("1970-01-01T00:00:00.000Z")),
        ),
        ("$toMillis($now()) <= $millis()", Some(json!(true))),
        ("$now() = $now()", Some(json!(true))),
    ]);
}

#[test]
fn step_functions_extensions() {
    check(&[
        ("$partition([0, 1, 2], 2)", Some(json!([[0, 1], [2]]))),
        ("$partition([0, 1, 2], 4)", Some(json!([[0, 1, 2]]))),
        ("$range(0, 10, 3)", Some(json!([0, 3, 6, 9]))),
        ("$range(1, 9, 9)", Some(json!(1))),
        ("$range(5, 1, -2)", Some(json!([5, 3, 1]))),
        (
            "$hash('abc', 'MD5')",
            Some(json!("900150983cd24fb0d6963f7d28e17f72")),
        ),
        (
            "$hash('abc', 'SHA-1')",
            Some(json!("a9993e364706816aba3e25717850c26c9cd0d89d")),
        ),
        (
            "$hash('abc', 'SHA-256')",
            Some(json!(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            )),
        ),
        ("$length($hash('abc', 'SHA-384'))", Some(json!(96))),
        ("$length($hash('abc', 'SHA-512'))", Some(json!(128))),
        ("$random(7) = $random(7)", Some(json!(true))),
        ("$random(7) < 1", Some(json!(true))),
        ("$length($uuid())", Some(json!(36))),
        (
            "$parse('{\"Arg1\": 1, \"Arg2\": []}')",
            Some(json!({"Arg1": 1, "Arg2": []})),
        ),
        ("$parse('\"HelloWorld\"')", Some(json!("HelloWorld"))),
        ("$parse('-0')", Some(json!(0))),
        ("$parse('[1,2]')[1]", Some(json!(2))),
    ]);
}

#[test]
fn step_functions_are_opt_in() {
    let e = Expression::parse("$uuid()")
        .unwrap()
        .evaluate(&json!({}), &Env::new())
        .unwrap_err();
    assert_eq!(e.code, "T1006");
    let r = Expression::parse("$random(1)")
        .unwrap()
        .evaluate(&json!({}), &Env::new());
    assert_eq!(r.unwrap_err().code, "T0410");
}

#[test]
fn errors_carry_jsonata_codes() {
    let cases: &[(&str, &str)] = &[
        ("1 +", "S0207"),
        ("'unterminated", "S0101"),
        ("(1", "S0203"),
        ("1 2", "S0201"),
        ("/[/", "S0302"),
        ("'a' + 1", "T2001"),
        ("1 + 'a'", "T2002"),
        ("1 < 'a'", "T2009"),
        ("{} < 1", "T2010"),
        ("-'a'", "D1002"),
        ("1/0", "D1001"),
        ("$power(10, 400)", "D3061"),
        ("$sqrt(-1)", "D3060"),
        ("$number('abc')", "D3030"),
        ("$uppercase(1)", "T0410"),
        ("$sum(['a'])", "T0412"),
        ("$notAFunction(1)", "T1006"),
        ("name(1)", "T1005"),
        ("{1: 2}", "T1003"),
        ("orders{cat: 1, cat: 2}", "D1009"),
        ("1 ~> 2", "T2006"),
        ("['a', 1]^($)", "T2007"),
        ("$sort([1, 'a'])", "D3070"),
        ("$single([1, 2])", "D3138"),
        ("$single([])", "D3139"),
        ("$error('boom')", "D3137"),
        ("$assert(false, 'nope')", "D3141"),
        ("$replace('a', '', 'b')", "D3010"),
        ("$toMillis('05-12-2016')", "D3110"),
        ("$formatBase(1, 40)", "D3100"),
        ("[1..'a']", "T2004"),
        ("| a | {} |", "S0218"),
        ("$string(1/0)", "D1001"),
        ("$fn := function($x){$x}", Error::UNSUPPORTED_RESULT),
        (
            "($f := function($n){$f($n + 1)}; $f(0))",
            Error::STACK_OVERFLOW,
        ),
        ("$hash('a', 'CRC32')", "D3040"),
        ("$parse('{bad')", "D3040"),
        ("$partition([1], 0)", "D3040"),
    ];
    let input = doc();
    let mut failures = Vec::new();
    for (expr, code) in cases {
        match run(expr, &input) {
            Err(e) if e.code == *code => {
                assert!(!e.message.is_empty());
                assert!(e.position.is_some(), "{expr}: no position");
            }
            other => failures.push(format!("{expr}: expected {code}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_display_includes_code_and_position() {
    let e = run("'a' + 1", &json!({})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "T2001: The left side of the + operator must evaluate to a number (at position 0)"
    );
}

#[test]
fn undefined_drops_out_of_constructors() {
    check(&[
        ("[1, missing, 2]", Some(json!([1, 2]))),
        ("{'a': missing, 'b': 1}", Some(json!({"b": 1}))),
        ("{'a': nothing}", Some(json!({"a": null}))),
    ]);
}

#[test]
fn array_input_is_the_context() {
    let input = json!([{"a": 1}, {"a": 2}]);
    assert_eq!(run("a", &input).unwrap(), Some(json!([1, 2])));
    assert_eq!(run("$", &input).unwrap(), Some(input.clone()));
    assert_eq!(run("$[1].a", &input).unwrap(), Some(json!(2)));
    assert_eq!(run("$count($)", &input).unwrap(), Some(json!(2)));
}

#[test]
fn integers_serialise_as_integers() {
    let v = run("[2.0 * 3, 7 / 2, 1e3]", &json!({})).unwrap().unwrap();
    assert_eq!(serde_json::to_string(&v).unwrap(), "[6,3.5,1000]");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(Expression::parse(&deep).unwrap_err().code, "S0208");
    let recurse = "($f := function($n){$n = 0 ? 0 : 1 + $f($n - 1)}; $f(100000))";
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || run(recurse, &json!({})))
        .unwrap();
    assert_eq!(handle.join().unwrap().unwrap_err().code, "U1001");
    // Within the limit, recursion works on a 2 MiB stack.
    let ok = "($f := function($n){$n = 0 ? 0 : 1 + $f($n - 1)}; $f(50))";
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || run(ok, &json!({})))
        .unwrap();
    assert_eq!(handle.join().unwrap().unwrap(), Some(json!(50)));
}

#[test]
fn expressions_are_send_and_sync_and_reusable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Expression>();
    assert_send_sync::<Env>();
    let e = Expression::parse("a * 2").unwrap();
    for i in 0..10 {
        assert_eq!(
            e.evaluate(&json!({"a": i}), &Env::new()).unwrap(),
            Some(json!(i * 2))
        );
    }
}

/// Every `{% ... %}` expression in the recorded Step Functions conformance cases parses, and
/// evaluates without a syntax or type error against an empty `$states`.
#[test]
fn conformance_case_expressions_parse() {
    // The same suite, found the same way, as crates/upsell-asl/tests/conformance.rs.
    let dir = match std::env::var_os("UPSELL_ASL_CONFORMANCE") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/asl-conformance")
        }
    };
    if !dir.join("index.json").exists() {
        assert!(
            std::env::var_os("UPSELL_REQUIRE_CONFORMANCE").is_none(),
            "UPSELL_REQUIRE_CONFORMANCE is set but there is no suite at {} (set UPSELL_ASL_CONFORMANCE)",
            dir.display()
        );
        eprintln!(
            "conformance cases not found at {} (set UPSELL_ASL_CONFORMANCE); skipping",
            dir.display()
        );
        return;
    }
    let mut exprs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "definition.json") {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                collect(&v, &mut exprs);
            }
        }
    }
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.starts_with("{%") && s.ends_with("%}") => {
                out.push(s[2..s.len() - 2].to_string());
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            Value::Object(o) => o.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    assert!(
        !exprs.is_empty(),
        "no JSONata expressions found under {}",
        dir.display()
    );
    let mut env = Env::new().with_step_functions_extensions();
    env.bind("states", json!({"input": {}, "context": {}}));
    for src in &exprs {
        let expr = Expression::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        if let Err(e) = expr.evaluate(&json!({}), &env) {
            assert!(
                e.code == Error::UNSUPPORTED_RESULT || e.code.starts_with('D'),
                "{src}: {e}"
            );
        }
    }
}
