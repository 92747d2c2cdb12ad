//! Intermediate values: borrowed views into the input JSON plus values built during evaluation.
//!
//! `Val` borrows from the input and the bindings (`JArr`, `JObj`, `Str(S::B)`), so navigating a
//! path never clones the input; only the final result is converted to `serde_json::Value`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::error::Error;
use crate::functions::Builtin;
use crate::parser::LambdaDef;

/// A string, borrowed from the input or owned.
#[derive(Clone, Debug)]
pub(crate) enum S<'a> {
    B(&'a str),
    O(Rc<str>),
}

impl std::ops::Deref for S<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            S::B(s) => s,
            S::O(s) => s,
        }
    }
}

/// An array built during evaluation; `seq` marks JSONata sequences (results of path steps).
#[derive(Clone, Debug, Default)]
pub(crate) struct Arr<'a> {
    pub items: Vec<Val<'a>>,
    pub seq: bool,
    pub keep: bool,
    pub cons: bool,
    pub outer: bool,
}

pub(crate) type Obj<'a> = IndexMap<String, Val<'a>>;

#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(S<'a>),
    JArr(&'a Vec<Value>),
    JObj(&'a Map<String, Value>),
    Arr(Rc<Arr<'a>>),
    Obj(Rc<Obj<'a>>),
    Func(Rc<Func<'a>>),
    Regex(Arc<Regex>),
}

/// A variable frame; lambdas keep the frame they were defined in.
#[derive(Debug, Default)]
pub(crate) struct Frame<'a> {
    pub vars: RefCell<Vec<(&'a str, Val<'a>)>>,
    pub parent: Option<Rc<Frame<'a>>>,
}

impl<'a> Frame<'a> {
    pub fn child(parent: &Rc<Frame<'a>>) -> Rc<Frame<'a>> {
        Rc::new(Frame {
            vars: RefCell::new(Vec::new()),
            parent: Some(parent.clone()),
        })
    }

    pub fn bind(&self, name: &'a str, value: Val<'a>) {
        let mut vars = self.vars.borrow_mut();
        if let Some(slot) = vars.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            vars.push((name, value));
        }
    }

    pub fn lookup(&self, name: &str) -> Option<Val<'a>> {
        let mut frame = self;
        loop {
            if let Some((_, v)) = frame.vars.borrow().iter().rev().find(|(n, _)| *n == name) {
                return Some(v.clone());
            }
            frame = frame.parent.as_deref()?;
        }
    }
}

#[derive(Debug)]
pub(crate) enum Func<'a> {
    Lambda {
        def: &'a LambdaDef,
        frame: Rc<Frame<'a>>,
        input: Option<Val<'a>>,
    },
    Builtin(&'static Builtin),
    /// Partial application; `None` marks a `?` placeholder.
    Partial {
        func: Val<'a>,
        args: Vec<Option<Val<'a>>>,
    },
    /// `f ~> g` on two functions: `g(f(x))`.
    Chain(Val<'a>, Val<'a>),
}

impl<'a> Func<'a> {
    /// Number of declared parameters (used by $map/$filter/$sort to decide what to pass).
    pub fn arity(&self) -> usize {
        match self {
            Func::Lambda { def, .. } => def.params.len(),
            Func::Builtin(b) => b.arity(),
            Func::Partial { args, .. } => args.iter().filter(|a| a.is_none()).count(),
            Func::Chain(f, _) => match f {
                Val::Func(f) => f.arity(),
                _ => 1,
            },
        }
    }
}

impl<'a> Val<'a> {
    pub fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Val::Str(S::B(s)),
            Value::Array(a) => Val::JArr(a),
            Value::Object(o) => Val::JObj(o),
        }
    }

    pub fn str(s: &str) -> Val<'a> {
        Val::Str(S::O(Rc::from(s)))
    }

    pub fn string(s: String) -> Val<'a> {
        Val::Str(S::O(Rc::from(s)))
    }

    pub fn array(items: Vec<Val<'a>>) -> Val<'a> {
        Val::Arr(Rc::new(Arr {
            items,
            ..Arr::default()
        }))
    }

    pub fn seq(items: Vec<Val<'a>>) -> Val<'a> {
        Val::Arr(Rc::new(Arr {
            items,
            seq: true,
            ..Arr::default()
        }))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Val::JArr(_) | Val::Arr(_))
    }

    pub fn is_seq(&self) -> bool {
        matches!(self, Val::Arr(a) if a.seq)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Val::JObj(_) | Val::Obj(_))
    }

    pub fn is_func(&self) -> bool {
        matches!(self, Val::Func(_) | Val::Regex(_))
    }

    pub fn as_num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Val::JArr(a) => a.len(),
            Val::Arr(a) => a.items.len(),
            _ => 1,
        }
    }

    /// Array members (or the value itself as a one-item list).
    pub fn items(&self) -> Vec<Val<'a>> {
        match self {
            Val::JArr(a) => a.iter().map(Val::from_json).collect(),
            Val::Arr(a) => a.items.clone(),
            _ => vec![self.clone()],
        }
    }

    pub fn field(&self, key: &str) -> Option<Val<'a>> {
        match self {
            Val::JObj(o) => o.get(key).map(Val::from_json),
            Val::Obj(o) => o.get(key).cloned(),
            _ => None,
        }
    }

    /// Object entries in order.
    pub fn entries(&self) -> Vec<(String, Val<'a>)> {
        match self {
            Val::JObj(o) => o
                .iter()
                .map(|(k, v)| (k.clone(), Val::from_json(v)))
                .collect(),
            Val::Obj(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::JArr(_) | Val::Arr(_) => "array",
            Val::JObj(_) | Val::Obj(_) => "object",
            Val::Func(_) | Val::Regex(_) => "function",
        }
    }

    /// The signature symbol of this value.
    pub fn symbol(&self) -> char {
        match self {
            Val::Null => 'l',
            Val::Bool(_) => 'b',
            Val::Num(_) => 'n',
            Val::Str(_) => 's',
            Val::JArr(_) | Val::Arr(_) => 'a',
            Val::JObj(_) | Val::Obj(_) => 'o',
            Val::Func(_) | Val::Regex(_) => 'f',
        }
    }

    /// JSONata's `$boolean` casting.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::JArr(a) => match a.len() {
                0 => false,
                1 => Val::from_json(&a[0]).truthy(),
                _ => a.iter().any(|v| Val::from_json(v).truthy()),
            },
            Val::Arr(a) => match a.items.len() {
                0 => false,
                1 => a.items[0].truthy(),
                _ => a.items.iter().any(Val::truthy),
            },
            Val::JObj(o) => !o.is_empty(),
            Val::Obj(o) => !o.is_empty(),
            Val::Func(_) | Val::Regex(_) => false,
        }
    }

    /// Converts to JSON; functions have no JSON form.
    pub fn to_json(&self) -> Result<Value, Error> {
        Ok(match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => num_to_json(*n)?,
            Val::Str(s) => Value::String(s.to_string()),
            Val::JArr(a) => Value::Array((*a).clone()),
            Val::JObj(o) => Value::Object((*o).clone()),
            Val::Arr(a) => {
                Value::Array(a.items.iter().map(Val::to_json).collect::<Result<_, _>>()?)
            }
            Val::Obj(o) => {
                let mut m = Map::with_capacity(o.len());
                for (k, v) in o.iter() {
                    m.insert(k.clone(), v.to_json()?);
                }
                Value::Object(m)
            }
            Val::Func(_) | Val::Regex(_) => {
                return Err(Error::new(
                    Error::UNSUPPORTED_RESULT,
                    "The expression evaluated to a function, which has no JSON representation",
                    None,
                ));
            }
        })
    }
}

/// A JSONata number as JSON: integral values become JSON integers.
pub(crate) fn num_to_json(n: f64) -> Result<Value, Error> {
    if !n.is_finite() {
        return Err(Error::new(
            "D1001",
            format!("Number out of range: {n}"),
            None,
        ));
    }
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        return Ok(Value::Number(Number::from(n as i64)));
    }
    Ok(Number::from_f64(n)
        .map(Value::Number)
        .unwrap_or(Value::Null))
}

/// Deep equality as JSONata's `=` uses it.
pub(crate) fn deep_equal<'a>(a: &Val<'a>, b: &Val<'a>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => **x == **y,
        (x, y) if x.is_array() && y.is_array() => {
            x.len() == y.len()
                && x.items()
                    .iter()
                    .zip(y.items().iter())
                    .all(|(p, q)| deep_equal(p, q))
        }
        (x, y) if x.is_object() && y.is_object() => {
            let (ex, ey) = (x.entries(), y.entries());
            ex.len() == ey.len()
                && ex
                    .iter()
                    .all(|(k, v)| y.field(k).is_some_and(|w| deep_equal(v, &w)))
        }
        (Val::Func(f), Val::Func(g)) => Rc::ptr_eq(f, g),
        _ => false,
    }
}

/// Formats a number as JavaScript's `String(n)` after JSONata's 15-significant-digit rounding.
pub(crate) fn format_number(n: f64) -> String {
    let rounded: f64 = format!("{n:.14e}").parse().unwrap_or(n);
    js_number(rounded)
}

/// JavaScript's `Number.prototype.toString()`.
pub(crate) fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let e = format!("{n:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let k = digits.len() as i32;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-7..21).contains(&exp) {
        if exp >= k - 1 {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (exp - k + 1) as usize));
        } else if exp >= 0 {
            out.push_str(&digits[..(exp + 1) as usize]);
            out.push('.');
            out.push_str(&digits[(exp + 1) as usize..]);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if exp > 0 { "+" } else { "-" }, exp.abs());
    }
    out
}

/// JSON text as JSONata's `$string` produces it (numbers rounded, functions as "").
pub(crate) fn stringify(v: &Val<'_>, pretty: bool) -> String {
    let mut out = String::new();
    write_json(v, pretty, 0, &mut out);
    out
}

fn write_str(s: &str, out: &mut String) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

fn write_json(v: &Val<'_>, pretty: bool, indent: usize, out: &mut String) {
    let nl = |out: &mut String, level: usize| {
        if pretty {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', level * 2));
        }
    };
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => out.push_str(&format_number(*n)),
        Val::Str(s) => write_str(s, out),
        Val::Func(_) | Val::Regex(_) => out.push_str("\"\""),
        _ if v.is_array() => {
            let items = v.items();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, indent + 1);
                write_json(item, pretty, indent + 1, out);
            }
            if !items.is_empty() {
                nl(out, indent);
            }
            out.push(']');
        }
        _ => {
            let entries = v.entries();
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, indent + 1);
                write_str(k, out);
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                write_json(item, pretty, indent + 1, out);
            }
            if !entries.is_empty() {
                nl(out, indent);
            }
            out.push('}');
        }
    }
}
