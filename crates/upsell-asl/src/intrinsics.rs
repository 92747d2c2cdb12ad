//! The 18 intrinsic functions (`States.Format(...)` ... `States.UUID()`): parsed once when the
//! definition is loaded, evaluated per execution.

use crate::error::{Failure, names};
use crate::jsonpath::JsonPath;
use base64::Engine as _;
use serde_json::{Map, Value};

/// An argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A literal (string, number, boolean, null).
    Literal(Value),
    /// A JSONPath (`$.x`, `$$.x`, `$var`).
    Path(JsonPath),
    /// A nested call.
    Call(Box<Intrinsic>),
}

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Intrinsic {
    /// Function name including `States.`.
    pub name: String,
    /// Arguments in order.
    pub args: Vec<Arg>,
}

const FUNCTIONS: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathRandom",
    "States.MathAdd",
    "States.StringSplit",
    "States.UUID",
];

/// True when a string looks like an intrinsic call (`States.X(`).
pub fn looks_like_call(s: &str) -> bool {
    s.trim_start().starts_with("States.") && s.contains('(')
}

impl Intrinsic {
    /// Parses `States.Name(arg, ...)`.
    pub fn parse(src: &str) -> Result<Intrinsic, String> {
        let chars: Vec<char> = src.trim().chars().collect();
        let mut pos = 0;
        let call = parse_call(&chars, &mut pos)
            .map_err(|e| format!("The value '{src}' is not a valid intrinsic function: {e}"))?;
        skip_ws(&chars, &mut pos);
        if pos != chars.len() {
            return Err(format!(
                "The value '{src}' is not a valid intrinsic function: unexpected trailing text"
            ));
        }
        Ok(call)
    }

    /// Evaluates the call; `resolve` reads a JSONPath argument.
    pub fn eval(
        &self,
        resolve: &dyn Fn(&JsonPath) -> Result<Value, Failure>,
    ) -> Result<Value, Failure> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => resolve(p)?,
                Arg::Call(c) => c.eval(resolve)?,
            });
        }
        call(&self.name, args)
    }
}

fn skip_ws(c: &[char], pos: &mut usize) {
    while *pos < c.len() && c[*pos].is_whitespace() {
        *pos += 1;
    }
}

fn parse_call(c: &[char], pos: &mut usize) -> Result<Intrinsic, String> {
    skip_ws(c, pos);
    let start = *pos;
    while *pos < c.len() && (c[*pos].is_alphanumeric() || c[*pos] == '.') {
        *pos += 1;
    }
    let name: String = c[start..*pos].iter().collect();
    if !FUNCTIONS.contains(&name.as_str()) {
        return Err(format!("unknown function '{name}'"));
    }
    skip_ws(c, pos);
    if c.get(*pos) != Some(&'(') {
        return Err("expected '('".into());
    }
    *pos += 1;
    let mut args = Vec::new();
    skip_ws(c, pos);
    if c.get(*pos) == Some(&')') {
        *pos += 1;
        return Ok(Intrinsic { name, args });
    }
    loop {
        skip_ws(c, pos);
        args.push(parse_arg(c, pos)?);
        skip_ws(c, pos);
        match c.get(*pos) {
            Some(',') => *pos += 1,
            Some(')') => {
                *pos += 1;
                return Ok(Intrinsic { name, args });
            }
            _ => return Err("expected ',' or ')'".into()),
        }
    }
}

fn parse_arg(c: &[char], pos: &mut usize) -> Result<Arg, String> {
    match c.get(*pos) {
        Some('\'') => {
            *pos += 1;
            let mut s = String::new();
            loop {
                match c.get(*pos) {
                    None => return Err("unterminated string".into()),
                    Some('\\') => {
                        let n = c.get(*pos + 1).ok_or("unterminated string")?;
                        // Keep `\{` `\}` escaped so States.Format can tell them from placeholders.
                        if matches!(n, '{' | '}') {
                            s.push('\\');
                        }
                        s.push(*n);
                        *pos += 2;
                    }
                    Some('\'') => {
                        *pos += 1;
                        return Ok(Arg::Literal(Value::String(s)));
                    }
                    Some(ch) => {
                        s.push(*ch);
                        *pos += 1;
                    }
                }
            }
        }
        Some('$') => {
            let start = *pos;
            let mut depth = 0;
            let mut quote: Option<char> = None;
            while *pos < c.len() {
                let ch = c[*pos];
                if let Some(q) = quote {
                    if ch == q {
                        quote = None;
                    }
                } else if ch == '[' {
                    depth += 1;
                } else if ch == ']' {
                    depth -= 1;
                } else if ch == '\'' && depth > 0 {
                    quote = Some(ch);
                } else if depth == 0 && (ch == ',' || ch == ')') {
                    break;
                }
                *pos += 1;
            }
            let src: String = c[start..*pos].iter().collect();
            let src = src.trim_end();
            JsonPath::parse(src).map(Arg::Path).map_err(|e| e.0)
        }
        Some(ch) if ch.is_ascii_digit() || *ch == '-' => {
            let start = *pos;
            *pos += 1;
            while *pos < c.len()
                && (c[*pos].is_ascii_digit() || matches!(c[*pos], '.' | 'e' | 'E' | '+' | '-'))
            {
                *pos += 1;
            }
            let s: String = c[start..*pos].iter().collect();
            let v: Value = serde_json::from_str(&s).map_err(|_| format!("invalid number '{s}'"))?;
            Ok(Arg::Literal(v))
        }
        Some(_) => {
            let rest: String = c[*pos..].iter().collect();
            for (word, v) in [
                ("true", Value::Bool(true)),
                ("false", Value::Bool(false)),
                ("null", Value::Null),
            ] {
                if rest.starts_with(word) {
                    *pos += word.len();
                    return Ok(Arg::Literal(v));
                }
            }
            if rest.starts_with("States.") {
                return parse_call(c, pos).map(|i| Arg::Call(Box::new(i)));
            }
            Err(format!("unexpected argument '{rest}'"))
        }
        None => Err("unexpected end".into()),
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure::new(names::INTRINSIC, msg)
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), Failure> {
    if args.len() != n {
        return Err(fail(format!(
            "Function {name} expects {n} argument(s) but got {}",
            args.len()
        )));
    }
    Ok(())
}

/// Java's Math.round: half rounds up (towards positive infinity).
fn java_round(f: f64) -> i64 {
    (f + 0.5).floor() as i64
}

fn as_rounded(name: &str, v: &Value) -> Result<i64, Failure> {
    match v {
        Value::Number(n) => Ok(n
            .as_i64()
            .unwrap_or_else(|| java_round(n.as_f64().unwrap_or(0.0)))),
        _ => Err(fail(format!("{name}: expected a number but got {v}"))),
    }
}

fn as_int(name: &str, v: &Value) -> Result<i64, Failure> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| fail(format!("{name}: expected an integer but got {v}"))),
        _ => Err(fail(format!("{name}: expected an integer but got {v}"))),
    }
}

fn as_str<'a>(name: &str, v: &'a Value) -> Result<&'a str, Failure> {
    v.as_str()
        .ok_or_else(|| fail(format!("{name}: expected a string but got {v}")))
}

fn as_array<'a>(name: &str, v: &'a Value) -> Result<&'a Vec<Value>, Failure> {
    v.as_array()
        .ok_or_else(|| fail(format!("{name}: expected an array but got {v}")))
}

/// Renders a value the way States.Format does (strings unquoted, others as JSON).
fn format_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, Failure> {
    match name {
        "States.Format" => {
            if args.is_empty() {
                return Err(fail("States.Format expects at least one argument"));
            }
            let tpl = as_str(name, &args[0])?;
            let mut out = String::new();
            let mut it = args[1..].iter();
            let chars: Vec<char> = tpl.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                match chars[i] {
                    '\\' if i + 1 < chars.len() => {
                        out.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    '{' if chars.get(i + 1) == Some(&'}') => {
                        let v = it.next().ok_or_else(|| {
                            fail("The number of arguments does not match the number of placeholders in States.Format")
                        })?;
                        out.push_str(&format_arg(v));
                        i += 2;
                        continue;
                    }
                    c => out.push(c),
                }
                i += 1;
            }
            if it.next().is_some() {
                return Err(fail(
                    "The number of arguments does not match the number of placeholders in States.Format",
                ));
            }
            Ok(Value::String(out))
        }
        "States.StringToJson" => {
            arity(name, &args, 1)?;
            let s = as_str(name, &args[0])?;
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s)
                .map_err(|e| fail(format!("States.StringToJson: invalid JSON: {e}")))
        }
        "States.JsonToString" => {
            arity(name, &args, 1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            arity(name, &args, 2)?;
            let arr = as_array(name, &args[0])?;
            let size = as_int(name, &args[1])?;
            if size <= 0 {
                return Err(fail(
                    "States.ArrayPartition: the chunk size must be greater than 0",
                ));
            }
            Ok(Value::Array(
                arr.chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => {
            arity(name, &args, 2)?;
            let arr = as_array(name, &args[0])?;
            Ok(Value::Bool(arr.iter().any(|x| json_eq(x, &args[1]))))
        }
        "States.ArrayRange" => {
            arity(name, &args, 3)?;
            let (a, b, s) = (
                as_int(name, &args[0])?,
                as_int(name, &args[1])?,
                as_int(name, &args[2])?,
            );
            if s == 0 {
                return Err(fail("States.ArrayRange: the step must not be 0"));
            }
            let mut out = Vec::new();
            let mut x = a;
            while (s > 0 && x <= b) || (s < 0 && x >= b) {
                out.push(Value::from(x));
                if out.len() > 1000 {
                    return Err(fail("States.ArrayRange: the result exceeds 1000 items"));
                }
                x += s;
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            arity(name, &args, 2)?;
            let arr = as_array(name, &args[0])?;
            let i = as_int(name, &args[1])?;
            if i < 0 || i as usize >= arr.len() {
                return Err(fail(format!(
                    "States.ArrayGetItem: index {i} out of bounds"
                )));
            }
            Ok(arr[i as usize].clone())
        }
        "States.ArrayLength" => {
            arity(name, &args, 1)?;
            Ok(Value::from(as_array(name, &args[0])?.len()))
        }
        "States.ArrayUnique" => {
            arity(name, &args, 1)?;
            let arr = as_array(name, &args[0])?;
            let mut out: Vec<Value> = Vec::new();
            for x in arr {
                if !out.iter().any(|y| json_eq(x, y)) {
                    out.push(x.clone());
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            arity(name, &args, 1)?;
            let s = as_str(name, &args[0])?;
            if s.len() > 10_000 {
                return Err(fail("States.Base64Encode: input exceeds 10000 characters"));
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s),
            ))
        }
        "States.Base64Decode" => {
            arity(name, &args, 1)?;
            let s = as_str(name, &args[0])?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| fail(format!("States.Base64Decode: {e}")))?;
            Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }
        "States.Hash" => {
            arity(name, &args, 2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                Value::Null => return Err(fail("States.Hash: the data to hash must not be null")),
                other => other.to_string(),
            };
            let alg = as_str(name, &args[1])?;
            Ok(Value::String(hash_hex(alg, data.as_bytes())?))
        }
        "States.JsonMerge" => {
            arity(name, &args, 3)?;
            if args[2] != Value::Bool(false) {
                return Err(fail(
                    "States.JsonMerge: deep merging is not supported; the third argument must be false",
                ));
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err(fail(
                    "States.JsonMerge: both arguments must be JSON objects",
                ));
            };
            let mut m: Map<String, Value> = a.clone();
            for (k, v) in b {
                m.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(m))
        }
        "States.MathRandom" => {
            if args.len() != 2 && args.len() != 3 {
                return Err(fail("States.MathRandom expects 2 or 3 arguments"));
            }
            let a = as_rounded(name, &args[0])?;
            let b = as_rounded(name, &args[1])?;
            if a >= b {
                return Err(fail("States.MathRandom: start must be less than end"));
            }
            use rand::{Rng, SeedableRng};
            let v = if let Some(seed) = args.get(2) {
                let mut r = rand::rngs::StdRng::seed_from_u64(as_int(name, seed)? as u64);
                r.random_range(a..b)
            } else {
                rand::rng().random_range(a..b)
            };
            Ok(Value::from(v))
        }
        "States.MathAdd" => {
            arity(name, &args, 2)?;
            // Step Functions rounds both operands to integers (Java Math.round) before adding.
            let a = as_rounded(name, &args[0])?;
            let b = as_rounded(name, &args[1])?;
            Ok(Value::from(a + b))
        }
        "States.StringSplit" => {
            arity(name, &args, 2)?;
            let s = as_str(name, &args[0])?;
            let d = as_str(name, &args[1])?;
            let delims: Vec<char> = d.chars().collect();
            Ok(Value::Array(
                s.split(|c| delims.contains(&c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            ))
        }
        "States.UUID" => {
            arity(name, &args, 0)?;
            Ok(Value::String(uuid::Uuid::new_v4().to_string()))
        }
        other => Err(fail(format!("Unknown intrinsic function {other}"))),
    }
}

fn hash_hex(alg: &str, data: &[u8]) -> Result<String, Failure> {
    use sha2::Digest;
    let bytes: Vec<u8> = match alg {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data).to_vec(),
        other => {
            return Err(fail(format!(
                "States.Hash: unsupported algorithm '{other}' (use MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
            )));
        }
    };
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// JSON equality where 1 == 1.0.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, input: Value) -> Result<Value, Failure> {
        let i = Intrinsic::parse(src).unwrap();
        i.eval(&|p: &JsonPath| Ok(p.read(&input).unwrap_or(Value::Null)))
    }

    #[test]
    fn format_and_nesting() {
        assert_eq!(
            run("States.Format('a {} b {}', $.x, 3)", json!({"x": "X"})).unwrap(),
            json!("a X b 3")
        );
        assert_eq!(
            run("States.MathAdd(States.MathAdd(1, 2), -1)", json!({})).unwrap(),
            json!(2)
        );
        assert_eq!(
            run("States.Format('\\{\\}')", json!({})).unwrap(),
            json!("{}")
        );
    }

    #[test]
    fn arrays_and_hash() {
        assert_eq!(
            run("States.ArrayRange(0, 6, 2)", json!({})).unwrap(),
            json!([0, 2, 4, 6])
        );
        assert_eq!(
            run("States.ArrayPartition($.a, 2)", json!({"a": [1, 2, 3]})).unwrap(),
            json!([[1, 2], [3]])
        );
        assert_eq!(
            run("States.Hash('abc', 'MD5')", json!({})).unwrap(),
            json!("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            run("States.ArrayGetItem($.a, 5)", json!({"a": []}))
                .unwrap_err()
                .error,
            names::INTRINSIC
        );
    }
}
