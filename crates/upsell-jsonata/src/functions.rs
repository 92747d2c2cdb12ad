//! The JSONata standard library, and the registry that also holds the Step Functions functions.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use indexmap::IndexMap;
use rand::Rng as _;
use regex::Regex;
use serde_json::Value;

use crate::error::Error;
use crate::eval::{Ctx, R, append, compare_values, err, show};
use crate::signature::Signature;
use crate::value::{S, Val, deep_equal, js_number, stringify};
use crate::{datetime, stepfunctions};

pub(crate) type BuiltinFn = for<'a> fn(&Ctx<'a>, Vec<Option<Val<'a>>>, usize) -> R<'a>;

/// A native function with its JSONata signature.
pub(crate) struct Builtin {
    pub name: &'static str,
    sig: &'static str,
    pub f: BuiltinFn,
    parsed: OnceLock<Signature>,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}{}", self.name, self.sig)
    }
}

impl Builtin {
    pub const fn new(name: &'static str, sig: &'static str, f: BuiltinFn) -> Builtin {
        Builtin {
            name,
            sig,
            f,
            parsed: OnceLock::new(),
        }
    }

    pub fn signature(&self) -> &Signature {
        self.parsed
            .get_or_init(|| Signature::parse(self.sig, 0).expect("built-in signatures are valid"))
    }

    /// Number of required parameters, as JSONata's higher-order functions count them.
    pub fn arity(&self) -> usize {
        let body = self.sig.trim_start_matches('<');
        let body = body.split(':').next().unwrap_or("");
        let mut count = 0;
        let mut depth = 0;
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '<' => depth += 1,
                '>' if depth > 0 => depth -= 1,
                '(' if depth == 0 => {
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    if chars.get(i + 1) != Some(&'?') {
                        count += 1;
                    }
                }
                c if depth == 0 && "snblofxja".contains(c) && chars.get(i + 1) != Some(&'?') => {
                    count += 1;
                }
                _ => {}
            }
            i += 1;
        }
        count.max(1)
    }
}

static STD: [Builtin; 64] = [
    Builtin::new("sum", "<a<n>:n>", sum),
    Builtin::new("count", "<a:n>", count),
    Builtin::new("max", "<a<n>:n>", max),
    Builtin::new("min", "<a<n>:n>", min),
    Builtin::new("average", "<a<n>:n>", average),
    Builtin::new("string", "<x-b?:s>", string),
    Builtin::new("substring", "<s-nn?:s>", substring),
    Builtin::new("substringBefore", "<s-s:s>", substring_before),
    Builtin::new("substringAfter", "<s-s:s>", substring_after),
    Builtin::new("lowercase", "<s-:s>", lowercase),
    Builtin::new("uppercase", "<s-:s>", uppercase),
    Builtin::new("length", "<s-:n>", length),
    Builtin::new("trim", "<s-:s>", trim),
    Builtin::new("pad", "<s-ns?:s>", pad),
    Builtin::new("match", "<s-f<s:o>n?:a<o>>", match_),
    Builtin::new("contains", "<s-(sf):b>", contains),
    Builtin::new("replace", "<s-(sf)(sf)n?:s>", replace),
    Builtin::new("split", "<s-(sf)n?:a<s>>", split),
    Builtin::new("join", "<a<s>s?:s>", join),
    Builtin::new("formatNumber", "<n-so?:s>", format_number_fn),
    Builtin::new("formatBase", "<n-n?:s>", format_base),
    Builtin::new("formatInteger", "<n-s:s>", format_integer),
    Builtin::new("number", "<(nsb)-:n>", number),
    Builtin::new("floor", "<n-:n>", floor),
    Builtin::new("ceil", "<n-:n>", ceil),
    Builtin::new("round", "<n-n?:n>", round),
    Builtin::new("abs", "<n-:n>", abs),
    Builtin::new("sqrt", "<n-:n>", sqrt),
    Builtin::new("power", "<n-n:n>", power),
    Builtin::new("random", "<:n>", random),
    Builtin::new("boolean", "<x-:b>", boolean),
    Builtin::new("not", "<x-:b>", not),
    Builtin::new("map", "<af>", map),
    Builtin::new("zip", "<a+>", zip),
    Builtin::new("filter", "<af>", filter),
    Builtin::new("single", "<af?>", single),
    Builtin::new("reduce", "<afj?:j>", reduce),
    Builtin::new("sift", "<o-f?:o>", sift),
    Builtin::new("keys", "<x-:a<s>>", keys),
    Builtin::new("lookup", "<x-s:x>", lookup_fn),
    Builtin::new("append", "<xx:a>", append_fn),
    Builtin::new("exists", "<x:b>", exists),
    Builtin::new("spread", "<x-:a<o>>", spread),
    Builtin::new("merge", "<a<o>:o>", merge),
    Builtin::new("reverse", "<a:a>", reverse),
    Builtin::new("each", "<o-f:a>", each),
    Builtin::new("error", "<s?:x>", error),
    Builtin::new("assert", "<bs?:x>", assert),
    Builtin::new("type", "<x:s>", type_),
    Builtin::new("sort", "<af?:a>", sort),
    Builtin::new("shuffle", "<a:a>", shuffle),
    Builtin::new("distinct", "<x:x>", distinct),
    Builtin::new("base64encode", "<s-:s>", base64encode),
    Builtin::new("base64decode", "<s-:s>", base64decode),
    Builtin::new("encodeUrlComponent", "<s-:s>", encode_url_component),
    Builtin::new("encodeUrl", "<s-:s>", encode_url),
    Builtin::new("decodeUrlComponent", "<s-:s>", decode_url),
    Builtin::new("decodeUrl", "<s-:s>", decode_url),
    Builtin::new("eval", "<sx?:x>", eval_fn),
    Builtin::new("toMillis", "<s-s?:n>", datetime::to_millis),
    Builtin::new("fromMillis", "<n-s?s?:s>", datetime::from_millis),
    Builtin::new("now", "<s?s?:s>", datetime::now),
    Builtin::new("millis", "<:n>", datetime::millis),
    Builtin::new("clone", "<(oa)-:o>", clone),
];

fn index(table: &'static [Builtin]) -> HashMap<&'static str, &'static Builtin> {
    table.iter().map(|b| (b.name, b)).collect()
}

/// Finds a built-in function by name; Step Functions functions shadow the standard ones.
pub(crate) fn lookup(name: &str, step_functions: bool) -> Option<&'static Builtin> {
    static STD_INDEX: OnceLock<HashMap<&'static str, &'static Builtin>> = OnceLock::new();
    static SFN_INDEX: OnceLock<HashMap<&'static str, &'static Builtin>> = OnceLock::new();
    if step_functions
        && let Some(b) = SFN_INDEX
            .get_or_init(|| index(&stepfunctions::FUNCTIONS))
            .get(name)
    {
        return Some(b);
    }
    STD_INDEX.get_or_init(|| index(&STD)).get(name).copied()
}

// ---- argument helpers -------------------------------------------------------------------

pub(crate) fn arg<'v, 'a>(args: &'v [Option<Val<'a>>], i: usize) -> Option<&'v Val<'a>> {
    args.get(i).and_then(|a| a.as_ref())
}

pub(crate) fn num_arg(args: &[Option<Val<'_>>], i: usize) -> Option<f64> {
    arg(args, i).and_then(Val::as_num)
}

pub(crate) fn str_arg<'v>(args: &'v [Option<Val<'_>>], i: usize) -> Option<&'v str> {
    arg(args, i).and_then(Val::as_str)
}

fn num<'a>(n: f64) -> R<'a> {
    Ok(Some(Val::Num(n)))
}

fn string_val<'a>(s: String) -> R<'a> {
    Ok(Some(Val::string(s)))
}

fn chars_of(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// `$string` conversion of a defined value.
pub(crate) fn to_string(v: &Val<'_>, pos: usize) -> Result<String, Error> {
    match v {
        Val::Str(s) => Ok(s.to_string()),
        Val::Num(n) if !n.is_finite() => Err(err(
            "D3001",
            pos,
            "Attempting to invoke string function on Infinity or NaN",
        )),
        Val::Func(_) | Val::Regex(_) => Ok(String::new()),
        other => Ok(stringify(other, false)),
    }
}

/// Calls `f` with as many of `(value, index, array)` as it declares.
fn hof_args<'a>(f: &Val<'a>, items: [Option<Val<'a>>; 3]) -> Vec<Option<Val<'a>>> {
    let arity = match f {
        Val::Func(func) => func.arity(),
        _ => 1,
    };
    items.into_iter().take(arity.clamp(1, 3)).collect()
}

// ---- aggregation ------------------------------------------------------------------------

fn numbers(args: &[Option<Val<'_>>]) -> Option<Vec<f64>> {
    arg(args, 0).map(|a| a.items().iter().filter_map(Val::as_num).collect())
}

fn sum<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    match numbers(&args) {
        None => Ok(None),
        Some(ns) => num(ns.iter().sum()),
    }
}

fn count<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    num(arg(&args, 0).map_or(0, Val::len) as f64)
}

fn max<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(numbers(&args)
        .and_then(|ns| ns.into_iter().reduce(f64::max))
        .map(Val::Num))
}

fn min<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(numbers(&args)
        .and_then(|ns| ns.into_iter().reduce(f64::min))
        .map(Val::Num))
}

fn average<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    match numbers(&args) {
        Some(ns) if !ns.is_empty() => num(ns.iter().sum::<f64>() / ns.len() as f64),
        _ => Ok(None),
    }
}

// ---- strings ----------------------------------------------------------------------------

fn string<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(v) = arg(&args, 0) else {
        return Ok(None);
    };
    if let Val::Str(_) = v {
        return Ok(Some(v.clone()));
    }
    let pretty = matches!(arg(&args, 1), Some(Val::Bool(true)));
    if pretty && (v.is_array() || v.is_object()) {
        return string_val(stringify(v, true));
    }
    string_val(to_string(v, pos)?)
}

/// JavaScript `Array.prototype.slice` on code points.
fn js_slice(chars: &[char], start: f64, end: Option<f64>) -> String {
    let len = chars.len() as f64;
    let norm = |x: f64| -> usize {
        let x = x.trunc();
        let x = if x < 0.0 {
            (len + x).max(0.0)
        } else {
            x.min(len)
        };
        x as usize
    };
    let s = norm(start);
    let e = end.map_or(chars.len(), norm);
    if s >= e {
        return String::new();
    }
    chars[s..e].iter().collect()
}

fn substring<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let chars = chars_of(s);
    let len = chars.len() as f64;
    let mut start = num_arg(&args, 1).unwrap_or(0.0);
    if len + start < 0.0 {
        start = 0.0;
    }
    match num_arg(&args, 2) {
        Some(length) => {
            if length <= 0.0 {
                return string_val(String::new());
            }
            let end = if start >= 0.0 {
                start + length
            } else {
                len + start + length
            };
            string_val(js_slice(&chars, start, Some(end)))
        }
        None => string_val(js_slice(&chars, start, None)),
    }
}

fn substring_before<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let Some(sep) = str_arg(&args, 1) else {
        return Ok(arg(&args, 0).cloned());
    };
    match s.find(sep) {
        Some(i) => string_val(s[..i].to_string()),
        None => Ok(arg(&args, 0).cloned()),
    }
}

fn substring_after<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let Some(sep) = str_arg(&args, 1) else {
        return Ok(arg(&args, 0).cloned());
    };
    match s.find(sep) {
        Some(i) => string_val(s[i + sep.len()..].to_string()),
        None => Ok(arg(&args, 0).cloned()),
    }
}

fn lowercase<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(str_arg(&args, 0).map(|s| Val::string(s.to_lowercase())))
}

fn uppercase<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(str_arg(&args, 0).map(|s| Val::string(s.to_uppercase())))
}

fn length<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(str_arg(&args, 0).map(|s| Val::Num(s.chars().count() as f64)))
}

fn trim<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let mut out = String::with_capacity(s.len());
    let mut in_ws = false;
    for c in s.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r') {
            if !in_ws {
                out.push(' ');
            }
            in_ws = true;
        } else {
            out.push(c);
            in_ws = false;
        }
    }
    string_val(out.trim_matches(' ').to_string())
}

fn pad<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let width = num_arg(&args, 1).unwrap_or(0.0).trunc();
    let pad_char = match str_arg(&args, 2) {
        Some(c) if !c.is_empty() => c,
        _ => " ",
    };
    let len = s.chars().count() as f64;
    let pad_len = width.abs() - len;
    if pad_len <= 0.0 {
        return Ok(arg(&args, 0).cloned());
    }
    let padding: String = pad_char.chars().cycle().take(pad_len as usize).collect();
    string_val(if width > 0.0 {
        format!("{s}{padding}")
    } else {
        format!("{padding}{s}")
    })
}

/// The match object `{match, index, groups}` for one regex match.
fn match_object<'a>(s: &str, caps: &regex::Captures<'_>) -> Val<'a> {
    let m = caps.get(0).expect("group 0");
    let index = s[..m.start()].chars().count();
    let groups: Vec<Val<'a>> = (1..caps.len())
        .map(|i| Val::str(caps.get(i).map_or("", |g| g.as_str())))
        .collect();
    let mut o = IndexMap::new();
    o.insert("match".to_string(), Val::str(m.as_str()));
    o.insert("index".to_string(), Val::Num(index as f64));
    o.insert("groups".to_string(), Val::array(groups));
    Val::Obj(Rc::new(o))
}

/// A regex used as a function on a string: its first match object.
pub(crate) fn regex_first_match<'a>(re: &Regex, s: &str) -> Option<Val<'a>> {
    re.captures(s).map(|c| {
        let mut o = match match_object(s, &c) {
            Val::Obj(o) => (*o).clone(),
            _ => IndexMap::new(),
        };
        let m = c.get(0).expect("group 0");
        o.insert(
            "start".into(),
            Val::Num(s[..m.start()].chars().count() as f64),
        );
        o.insert("end".into(), Val::Num(s[..m.end()].chars().count() as f64));
        Val::Obj(Rc::new(o))
    })
}

fn regex_arg<'v>(
    args: &'v [Option<Val<'_>>],
    i: usize,
    name: &str,
    pos: usize,
) -> Result<&'v Arc<Regex>, Error> {
    match arg(args, i) {
        Some(Val::Regex(re)) => Ok(re),
        _ => Err(err(
            "T0410",
            pos,
            format!(
                "Argument {} of function {name} does not match function signature",
                i + 1
            ),
        )),
    }
}

fn limit_arg(
    args: &[Option<Val<'_>>],
    i: usize,
    code: &str,
    msg: &str,
    pos: usize,
) -> Result<Option<usize>, Error> {
    match num_arg(args, i) {
        None => Ok(None),
        Some(n) if n < 0.0 => Err(err(code, pos, msg)),
        Some(n) => Ok(Some(n as usize)),
    }
}

fn match_<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let re = regex_arg(&args, 1, "match", pos)?;
    let limit = limit_arg(
        &args,
        2,
        "D3040",
        "Third argument of match function must evaluate to a positive number",
        pos,
    )?;
    let out: Vec<Val<'a>> = re
        .captures_iter(s)
        .take(limit.unwrap_or(usize::MAX))
        .map(|c| match_object(s, &c))
        .collect();
    Ok(Some(Val::seq(out)))
}

fn contains<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let found = match arg(&args, 1) {
        Some(Val::Str(t)) => s.contains(&**t),
        Some(Val::Regex(re)) => re.is_match(s),
        _ => false,
    };
    Ok(Some(Val::Bool(found)))
}

/// Expands `$0`, `$1`.. and `$$` in a regex replacement string.
fn expand_replacement(rep: &str, caps: &regex::Captures<'_>) -> String {
    let groups = caps.len() - 1;
    let chars: Vec<char> = rep.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        let digits: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if digits.is_empty() {
            out.push('$');
            i += 1;
            continue;
        }
        // Longest prefix of the digits that names an existing group.
        let mut used = 0;
        let mut group = None;
        for k in (1..=digits.len()).rev() {
            if let Ok(g) = digits[..k].parse::<usize>()
                && g <= groups
            {
                used = k;
                group = Some(g);
                break;
            }
        }
        match group {
            Some(g) => out.push_str(caps.get(g).map_or("", |m| m.as_str())),
            None => used = 1,
        }
        i += 1 + used;
    }
    out
}

fn replace<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let limit = limit_arg(
        &args,
        3,
        "D3011",
        "Fourth argument of replace function must evaluate to a positive number",
        pos,
    )?
    .unwrap_or(usize::MAX);
    let replacement = arg(&args, 2).cloned();
    match arg(&args, 1) {
        Some(Val::Str(pattern)) => {
            if pattern.is_empty() {
                return Err(err(
                    "D3010",
                    pos,
                    "Second argument of replace function cannot be an empty string",
                ));
            }
            let Some(Val::Str(rep)) = &replacement else {
                return Err(err(
                    "T0410",
                    pos,
                    "Argument 3 of function replace does not match function signature",
                ));
            };
            let mut out = String::new();
            let mut rest = s;
            let mut n = 0;
            while n < limit
                && let Some(i) = rest.find(&**pattern)
            {
                out.push_str(&rest[..i]);
                out.push_str(rep);
                rest = &rest[i + pattern.len()..];
                n += 1;
            }
            out.push_str(rest);
            string_val(out)
        }
        Some(Val::Regex(re)) => {
            let mut out = String::new();
            let mut last = 0;
            for (n, caps) in re.captures_iter(s).enumerate() {
                if n >= limit {
                    break;
                }
                let m = caps.get(0).expect("group 0");
                if m.as_str().is_empty() {
                    return Err(err(
                        "D1004",
                        pos,
                        "Regular expression matches zero length string",
                    ));
                }
                out.push_str(&s[last..m.start()]);
                match &replacement {
                    Some(Val::Str(rep)) => out.push_str(&expand_replacement(rep, &caps)),
                    Some(f) if f.is_func() => {
                        let r = ctx.apply(f, vec![Some(match_object(s, &caps))], None, pos)?;
                        match r {
                            Some(Val::Str(r)) => out.push_str(&r),
                            _ => {
                                return Err(err(
                                    "D3012",
                                    pos,
                                    "Attempted to replace a matched string with a non-string value",
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(err(
                            "T0410",
                            pos,
                            "Argument 3 of function replace does not match function signature",
                        ));
                    }
                }
                last = m.end();
            }
            out.push_str(&s[last..]);
            string_val(out)
        }
        _ => Err(err(
            "T0410",
            pos,
            "Argument 2 of function replace does not match function signature",
        )),
    }
}

fn split<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let limit = limit_arg(
        &args,
        2,
        "D3020",
        "Third argument of split function must evaluate to a positive number",
        pos,
    )?
    .unwrap_or(usize::MAX);
    let parts: Vec<String> = match arg(&args, 1) {
        Some(Val::Str(sep)) if sep.is_empty() => s.chars().map(String::from).collect(),
        Some(Val::Str(sep)) => s.split(&**sep).map(String::from).collect(),
        Some(Val::Regex(re)) => re.split(s).map(String::from).collect(),
        _ => {
            return Err(err(
                "T0410",
                pos,
                "Argument 2 of function split does not match function signature",
            ));
        }
    };
    Ok(Some(Val::array(
        parts.into_iter().take(limit).map(Val::string).collect(),
    )))
}

fn join<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let sep = str_arg(&args, 1).unwrap_or("");
    let parts: Vec<String> = a
        .items()
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    string_val(parts.join(sep))
}

fn base64encode<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(str_arg(&args, 0)
        .map(|s| Val::string(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))))
}

fn base64decode<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(cleaned.as_bytes())
        .map_err(|e| err("D3137", pos, format!("Invalid base64 string: {e}")))?;
    string_val(String::from_utf8_lossy(&bytes).into_owned())
}

fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || keep.contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn encode_url_component<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(str_arg(&args, 0).map(|s| Val::string(percent_encode(s, "-_.!~*'()"))))
}

fn encode_url<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(str_arg(&args, 0).map(|s| Val::string(percent_encode(s, "-_.!~*'();,/?:@&=+$#"))))
}

fn decode_url<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let bad = || {
        err(
            "D3140",
            pos,
            format!("Malformed URL passed to $decodeUrl(): \"{s}\""),
        )
    };
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Val::string)
        .map(Some)
        .map_err(|_| bad())
}

// ---- numbers ----------------------------------------------------------------------------

fn number<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    match arg(&args, 0) {
        None => Ok(None),
        Some(Val::Num(n)) => num(*n),
        Some(Val::Bool(b)) => num(if *b { 1.0 } else { 0.0 }),
        Some(Val::Str(s)) => {
            static NUM: OnceLock<Regex> = OnceLock::new();
            let re = NUM.get_or_init(|| {
                Regex::new(r"^-?[0-9]+(\.[0-9]+)?([Ee][-+]?[0-9]+)?$").expect("valid")
            });
            let t = s.trim();
            let parsed = if re.is_match(t) {
                t.parse::<f64>().ok()
            } else if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                i64::from_str_radix(h, 16).ok().map(|v| v as f64)
            } else if let Some(o) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
                i64::from_str_radix(o, 8).ok().map(|v| v as f64)
            } else if let Some(b) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
                i64::from_str_radix(b, 2).ok().map(|v| v as f64)
            } else {
                None
            };
            match parsed {
                Some(n) if n.is_finite() => num(n),
                _ => Err(err(
                    "D3030",
                    pos,
                    format!("Unable to cast value to a number: \"{}\"", &**s),
                )),
            }
        }
        Some(v) => Err(err(
            "D3030",
            pos,
            format!("Unable to cast value to a number: {}", show(v)),
        )),
    }
}

fn floor<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(num_arg(&args, 0).map(|n| Val::Num(n.floor())))
}

fn ceil<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(num_arg(&args, 0).map(|n| Val::Num(n.ceil())))
}

fn abs<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(num_arg(&args, 0).map(|n| Val::Num(n.abs())))
}

/// Shifts the decimal point of `n` by `by` places through its decimal text, as JSONata does.
fn shift_decimal(n: f64, by: i32) -> f64 {
    let text = js_number(n);
    let (mant, exp) = match text.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    format!("{mant}e{}", exp + by).parse().unwrap_or(n)
}

/// JSONata's `$round`: half to even, at `precision` decimal places.
pub(crate) fn round_half_even(n: f64, precision: i32) -> f64 {
    let x = if precision != 0 {
        shift_decimal(n, precision)
    } else {
        n
    };
    let mut r = (x + 0.5).floor();
    if (r - x).abs() == 0.5 && (r % 2.0).abs() == 1.0 {
        r -= 1.0;
    }
    let mut r = if precision != 0 {
        shift_decimal(r, -precision)
    } else {
        r
    };
    if r == 0.0 {
        r = 0.0;
    }
    r
}

fn round<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(n) = num_arg(&args, 0) else {
        return Ok(None);
    };
    let precision = num_arg(&args, 1).unwrap_or(0.0) as i32;
    num(round_half_even(n, precision))
}

fn sqrt<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(n) = num_arg(&args, 0) else {
        return Ok(None);
    };
    if n < 0.0 {
        return Err(err(
            "D3060",
            pos,
            format!(
                "The sqrt function cannot be applied to a negative number: {}",
                js_number(n)
            ),
        ));
    }
    num(n.sqrt())
}

fn power<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(b) = num_arg(&args, 0) else {
        return Ok(None);
    };
    let e = num_arg(&args, 1).unwrap_or(f64::NAN);
    let r = b.powf(e);
    if !r.is_finite() {
        return Err(err(
            "D3061",
            pos,
            format!(
                "The power function has resulted in a value that cannot be represented as a JSON number: base={}, exponent={}",
                js_number(b),
                js_number(e)
            ),
        ));
    }
    num(r)
}

fn random<'a>(_: &Ctx<'a>, _: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    num(rand::rng().random::<f64>())
}

fn format_base<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(n) = num_arg(&args, 0) else {
        return Ok(None);
    };
    let radix = num_arg(&args, 1).unwrap_or(10.0);
    if !(2.0..=36.0).contains(&radix) {
        return Err(err(
            "D3100",
            pos,
            format!(
                "The radix of the formatBase function must be between 2 and 36.  It was given {}",
                js_number(radix)
            ),
        ));
    }
    let radix = radix as u32;
    let v = round_half_even(n, 0);
    let neg = v < 0.0;
    let mut m = v.abs() as u128;
    let mut digits = Vec::new();
    loop {
        digits.push(std::char::from_digit((m % radix as u128) as u32, radix).unwrap_or('0'));
        m /= radix as u128;
        if m == 0 {
            break;
        }
    }
    if neg {
        digits.push('-');
    }
    string_val(digits.into_iter().rev().collect())
}

fn roman(mut n: u64) -> String {
    const TABLE: &[(u64, &str)] = &[
        (1000, "m"),
        (900, "cm"),
        (500, "d"),
        (400, "cd"),
        (100, "c"),
        (90, "xc"),
        (50, "l"),
        (40, "xl"),
        (10, "x"),
        (9, "ix"),
        (5, "v"),
        (4, "iv"),
        (1, "i"),
    ];
    let mut out = String::new();
    for (v, s) in TABLE {
        while n >= *v {
            out.push_str(s);
            n -= v;
        }
    }
    out
}

/// Formats an integer with a decimal-digit picture (`0`, `000`, `#,##0`), `I`/`i` (roman)
/// or `A`/`a` (letters).
pub(crate) fn format_integer_picture(n: i64, picture: &str, pos: usize) -> Result<String, Error> {
    match picture {
        "I" => return Ok(roman(n.unsigned_abs()).to_uppercase()),
        "i" => return Ok(roman(n.unsigned_abs())),
        "A" | "a" => {
            let mut m = n.unsigned_abs();
            let mut s = Vec::new();
            while m > 0 {
                m -= 1;
                s.push((b'a' + (m % 26) as u8) as char);
                m /= 26;
            }
            let s: String = s.into_iter().rev().collect();
            return Ok(if picture == "A" { s.to_uppercase() } else { s });
        }
        _ => {}
    }
    let digits_pic: Vec<char> = picture.chars().collect();
    if digits_pic.is_empty()
        || !digits_pic
            .iter()
            .all(|c| c.is_ascii_digit() || *c == '#' || *c == ',')
    {
        return Err(err(
            "D3130",
            pos,
            format!(
                "Unsupported integer picture string: \"{picture}\" (supported: 0, 000, #,##0, I, i, A, a)"
            ),
        ));
    }
    let min_digits = digits_pic.iter().filter(|c| c.is_ascii_digit()).count();
    let mut body = format!("{:0>width$}", n.unsigned_abs(), width = min_digits);
    // Regular grouping from the picture's last separator.
    if let Some(last_sep) = digits_pic.iter().rposition(|c| *c == ',') {
        let group = digits_pic.len() - last_sep - 1;
        if group > 0 {
            let chars: Vec<char> = body.chars().collect();
            let mut grouped = String::new();
            for (i, c) in chars.iter().enumerate() {
                if i > 0 && (chars.len() - i).is_multiple_of(group) {
                    grouped.push(',');
                }
                grouped.push(*c);
            }
            body = grouped;
        }
    }
    Ok(if n < 0 { format!("-{body}") } else { body })
}

fn format_integer<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(n) = num_arg(&args, 0) else {
        return Ok(None);
    };
    let picture = str_arg(&args, 1).unwrap_or("0");
    string_val(format_integer_picture(n.trunc() as i64, picture, pos)?)
}

/// `$formatNumber` with the XPath picture subset: prefix/suffix text, `#` and `0` digits,
/// grouping `,`, decimal `.`, `%` and `‰`, and an `e` exponent.
fn format_number_fn<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(mut n) = num_arg(&args, 0) else {
        return Ok(None);
    };
    let picture = str_arg(&args, 1).unwrap_or("");
    let opt = |key: &str, default: char| -> char {
        arg(&args, 2)
            .and_then(|o| o.field(key))
            .and_then(|v| v.as_str().and_then(|s| s.chars().next()))
            .unwrap_or(default)
    };
    let (dec_sep, group_sep, zero, digit, pct, permille, exp_sep, minus) = (
        opt("decimal-separator", '.'),
        opt("grouping-separator", ','),
        opt("zero-digit", '0'),
        opt("digit", '#'),
        opt("percent", '%'),
        opt("per-mille", '‰'),
        opt("exponent-separator", 'e'),
        opt("minus-sign", '-'),
    );
    let sub_pictures: Vec<&str> = picture.split(';').collect();
    if sub_pictures.len() > 2 {
        return Err(err(
            "D3080",
            pos,
            "The picture string must only contain a maximum of two sub-pictures",
        ));
    }
    let pic = if n < 0.0 && sub_pictures.len() == 2 {
        sub_pictures[1]
    } else {
        sub_pictures[0]
    };
    let is_active = |c: char| {
        c == dec_sep
            || c == group_sep
            || c == digit
            || c == exp_sep
            || c.is_ascii_digit()
            || c == zero
    };
    let chars: Vec<char> = pic.chars().collect();
    let start = chars
        .iter()
        .position(|&c| is_active(c) && c != exp_sep)
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|&c| is_active(c) && c != exp_sep)
        .map_or(start, |e| e + 1);
    let prefix: String = chars[..start].iter().collect();
    let suffix: String = chars[end..].iter().collect();
    let body: String = chars[start..end].iter().collect();
    if prefix.contains(pct) || suffix.contains(pct) {
        n *= 100.0;
    } else if prefix.contains(permille) || suffix.contains(permille) {
        n *= 1000.0;
    }
    let (mantissa_pic, exp_pic) = match body.split_once(exp_sep) {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (body.clone(), None),
    };
    let (int_pic, frac_pic) = match mantissa_pic.split_once(dec_sep) {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (mantissa_pic.clone(), String::new()),
    };
    let is_digit_char = |c: char| c.is_ascii_digit() || c == zero;
    let min_int = int_pic.chars().filter(|&c| is_digit_char(c)).count();
    let min_frac = frac_pic.chars().filter(|&c| is_digit_char(c)).count();
    let max_frac = frac_pic
        .chars()
        .filter(|&c| is_digit_char(c) || c == digit)
        .count();
    let mut value = n.abs();
    let mut exponent = 0i32;
    if let Some(ep) = &exp_pic {
        if value != 0.0 {
            let int_digits = min_int.max(1) as i32;
            exponent = value.log10().floor() as i32 - (int_digits - 1);
            value /= 10f64.powi(exponent);
        }
        let _ = ep;
    }
    let rounded = round_half_even(value, max_frac as i32);
    let text = format!("{:.*}", max_frac, rounded);
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (text, String::new()),
    };
    let mut frac_part = frac_part;
    while frac_part.len() > min_frac && frac_part.ends_with('0') {
        frac_part.pop();
    }
    let mut int_part = int_part.trim_start_matches('0').to_string();
    while int_part.len() < min_int {
        int_part.insert(0, '0');
    }
    // Grouping: regular grouping from the rightmost separator in the integer picture.
    if let Some(last) = int_pic.rfind(group_sep) {
        let size = int_pic[last + group_sep.len_utf8()..].chars().count();
        if size > 0 {
            let digits: Vec<char> = int_part.chars().collect();
            let mut g = String::new();
            for (i, c) in digits.iter().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(size) {
                    g.push(group_sep);
                }
                g.push(*c);
            }
            int_part = g;
        }
    }
    let map_zero = |s: String| -> String {
        if zero == '0' {
            return s;
        }
        s.chars()
            .map(|c| {
                c.to_digit(10)
                    .and_then(|d| char::from_u32(zero as u32 + d))
                    .unwrap_or(c)
            })
            .collect()
    };
    let mut out = String::new();
    if n < 0.0 && sub_pictures.len() < 2 {
        out.push(minus);
    }
    out.push_str(&prefix);
    out.push_str(&map_zero(int_part));
    if !frac_part.is_empty() {
        out.push(dec_sep);
        out.push_str(&map_zero(frac_part));
    }
    if let Some(ep) = exp_pic {
        let width = ep.chars().filter(|&c| is_digit_char(c)).count();
        out.push(exp_sep);
        if exponent < 0 {
            out.push(minus);
        }
        out.push_str(&map_zero(format!("{:0>width$}", exponent.unsigned_abs())));
    }
    out.push_str(&suffix);
    string_val(out)
}

// ---- booleans ---------------------------------------------------------------------------

fn boolean<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(arg(&args, 0).map(|v| Val::Bool(v.truthy())))
}

fn not<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(arg(&args, 0).map(|v| Val::Bool(!v.truthy())))
}

fn exists<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(Some(Val::Bool(arg(&args, 0).is_some())))
}

// ---- arrays and objects -----------------------------------------------------------------

fn map<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let f = arg(&args, 1).expect("validated").clone();
    let items = a.items();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let call = hof_args(
            &f,
            [
                Some(item.clone()),
                Some(Val::Num(i as f64)),
                Some(a.clone()),
            ],
        );
        if let Some(v) = ctx.apply(&f, call, None, pos)? {
            out.push(v);
        }
    }
    Ok(Some(Val::seq(out)))
}

fn filter<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let f = arg(&args, 1).expect("validated").clone();
    let items = a.items();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let call = hof_args(
            &f,
            [
                Some(item.clone()),
                Some(Val::Num(i as f64)),
                Some(a.clone()),
            ],
        );
        if ctx.apply(&f, call, None, pos)?.is_some_and(|v| v.truthy()) {
            out.push(item.clone());
        }
    }
    Ok(Some(Val::seq(out)))
}

fn single<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let f = arg(&args, 1).cloned();
    let items = a.items();
    let mut found = None;
    for (i, item) in items.iter().enumerate() {
        let keep = match &f {
            None => true,
            Some(f) => {
                let call = hof_args(
                    f,
                    [
                        Some(item.clone()),
                        Some(Val::Num(i as f64)),
                        Some(a.clone()),
                    ],
                );
                ctx.apply(f, call, None, pos)?.is_some_and(|v| v.truthy())
            }
        };
        if keep {
            if found.is_some() {
                return Err(err(
                    "D3138",
                    pos,
                    "The $single() function expected exactly 1 matching result.  Instead it matched more.",
                ));
            }
            found = Some(item.clone());
        }
    }
    match found {
        Some(v) => Ok(Some(v)),
        None => Err(err(
            "D3139",
            pos,
            "The $single() function expected exactly 1 matching result.  Instead it matched 0.",
        )),
    }
}

fn reduce<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let f = arg(&args, 1).expect("validated").clone();
    if let Val::Func(func) = &f
        && func.arity() < 2
    {
        return Err(err(
            "D3050",
            pos,
            "The second argument of reduce function must be a function with at least two arguments",
        ));
    }
    let items = a.items();
    let (mut acc, start) = match arg(&args, 2) {
        Some(init) => (Some(init.clone()), 0),
        None => (items.first().cloned(), 1),
    };
    for (i, item) in items.iter().enumerate().skip(start) {
        let arity = match &f {
            Val::Func(func) => func.arity(),
            _ => 2,
        };
        let mut call = vec![acc, Some(item.clone())];
        if arity >= 3 {
            call.push(Some(Val::Num(i as f64)));
        }
        if arity >= 4 {
            call.push(Some(a.clone()));
        }
        acc = ctx.apply(&f, call, None, pos)?;
    }
    Ok(acc)
}

fn sift<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(o) = arg(&args, 0) else {
        return Ok(None);
    };
    let Some(f) = arg(&args, 1).cloned() else {
        return Ok(None);
    };
    let mut out = IndexMap::new();
    for (k, v) in o.entries() {
        let call = hof_args(&f, [Some(v.clone()), Some(Val::str(&k)), Some(o.clone())]);
        if ctx.apply(&f, call, None, pos)?.is_some_and(|r| r.truthy()) {
            out.insert(k, v);
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(Val::Obj(Rc::new(out))))
}

fn each<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(o) = arg(&args, 0) else {
        return Ok(None);
    };
    let f = arg(&args, 1).expect("validated").clone();
    let mut out = Vec::new();
    for (k, v) in o.entries() {
        let call = hof_args(&f, [Some(v), Some(Val::str(&k)), Some(o.clone())]);
        if let Some(r) = ctx.apply(&f, call, None, pos)? {
            out.push(r);
        }
    }
    Ok(Some(Val::seq(out)))
}

fn keys<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(v) = arg(&args, 0) else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::new();
    for item in v.items() {
        for (k, _) in item.entries() {
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    Ok(Some(Val::seq(out.into_iter().map(Val::string).collect())))
}

fn lookup_fn<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(v) = arg(&args, 0) else {
        return Ok(None);
    };
    let key = str_arg(&args, 1).unwrap_or("");
    if v.is_array() {
        let mut out = Vec::new();
        for item in v.items() {
            if let Some(r) = item.field(key) {
                if r.is_array() {
                    out.extend(r.items());
                } else {
                    out.push(r);
                }
            }
        }
        return Ok(Some(Val::seq(out)));
    }
    Ok(v.field(key))
}

fn append_fn<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let mut it = args.into_iter();
    Ok(append(it.next().flatten(), it.next().flatten()))
}

fn spread<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(v) = arg(&args, 0) else {
        return Ok(None);
    };
    if !v.is_array() && !v.is_object() {
        return Ok(Some(v.clone()));
    }
    let mut out = Vec::new();
    for item in v.items() {
        if item.is_object() {
            for (k, val) in item.entries() {
                let mut o = IndexMap::new();
                o.insert(k, val);
                out.push(Val::Obj(Rc::new(o)));
            }
        } else {
            out.push(item);
        }
    }
    Ok(Some(Val::seq(out)))
}

fn merge<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let mut out = IndexMap::new();
    for item in a.items() {
        for (k, v) in item.entries() {
            out.insert(k, v);
        }
    }
    Ok(Some(Val::Obj(Rc::new(out))))
}

fn reverse<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let mut items = a.items();
    items.reverse();
    Ok(Some(Val::array(items)))
}

fn shuffle<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    use rand::seq::SliceRandom as _;
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let mut items = a.items();
    items.shuffle(&mut rand::rng());
    Ok(Some(Val::array(items)))
}

fn distinct<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    if !a.is_array() {
        return Ok(Some(a.clone()));
    }
    let mut out: Vec<Val<'a>> = Vec::new();
    for item in a.items() {
        if !out.iter().any(|o| deep_equal(o, &item)) {
            out.push(item);
        }
    }
    Ok(Some(Val::seq(out)))
}

fn zip<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let arrays: Vec<Vec<Val<'a>>> = args
        .iter()
        .map(|a| a.as_ref().map(Val::items).unwrap_or_default())
        .collect();
    let len = arrays.iter().map(Vec::len).min().unwrap_or(0);
    let out = (0..len)
        .map(|i| Val::array(arrays.iter().map(|a| a[i].clone()).collect()))
        .collect();
    Ok(Some(Val::array(out)))
}

fn sort<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let items = a.items();
    if items.len() <= 1 {
        return Ok(Some(a.clone()));
    }
    let sorted = match arg(&args, 1) {
        None => {
            let all_num = items.iter().all(|v| matches!(v, Val::Num(_)));
            let all_str = items.iter().all(|v| matches!(v, Val::Str(_)));
            if !all_num && !all_str {
                return Err(err(
                    "D3070",
                    pos,
                    "The single argument form of the sort function can only be applied to an array of strings or an array of numbers.  Use the second argument to specify a comparison function",
                ));
            }
            let mut items = items;
            items.sort_by(compare_values);
            items
        }
        Some(f) => {
            let f = f.clone();
            merge_sort(items, &mut |x: &Val<'a>,
                                    y: &Val<'a>|
             -> Result<bool, Error> {
                Ok(ctx
                    .apply(&f, vec![Some(x.clone()), Some(y.clone())], None, pos)?
                    .is_some_and(|v| v.truthy()))
            })?
        }
    };
    Ok(Some(Val::array(sorted)))
}

/// Stable merge sort with a fallible "a goes after b" comparator, as JSONata's `$sort`.
fn merge_sort<'a>(
    items: Vec<Val<'a>>,
    after: &mut dyn FnMut(&Val<'a>, &Val<'a>) -> Result<bool, Error>,
) -> Result<Vec<Val<'a>>, Error> {
    if items.len() <= 1 {
        return Ok(items);
    }
    let mut left = items;
    let right = left.split_off(left.len() / 2);
    let left = merge_sort(left, after)?;
    let right = merge_sort(right, after)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        if after(a, b)? {
            out.push(r.next().expect("peeked"));
        } else {
            out.push(l.next().expect("peeked"));
        }
    }
    out.extend(l);
    out.extend(r);
    Ok(out)
}

fn type_<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(arg(&args, 0).map(|v| Val::str(v.type_name())))
}

fn error<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let msg = str_arg(&args, 0).unwrap_or("$error() function evaluated");
    Err(err("D3137", pos, msg))
}

fn assert<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    if matches!(arg(&args, 0), Some(Val::Bool(true))) {
        return Ok(None);
    }
    let msg = str_arg(&args, 1).unwrap_or("$assert() statement failed");
    Err(err("D3141", pos, msg))
}

fn clone<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(arg(&args, 0).cloned())
}

/// Converts an owned JSON value into an evaluation value.
pub(crate) fn from_owned<'a>(v: Value) -> Val<'a> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Val::Str(S::O(Rc::from(s))),
        Value::Array(a) => Val::array(a.into_iter().map(from_owned).collect()),
        Value::Object(o) => Val::Obj(Rc::new(
            o.into_iter().map(|(k, v)| (k, from_owned(v))).collect(),
        )),
    }
}

fn eval_fn<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(src) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let expr = crate::Expression::parse(src).map_err(|e| {
        err(
            "D3120",
            pos,
            format!(
                "Syntax error in expression passed to function eval: {}",
                e.message
            ),
        )
    })?;
    let input = match arg(&args, 1).or(ctx.root.as_ref()) {
        Some(v) => v.to_json()?,
        None => Value::Null,
    };
    let r = expr
        .eval_with(Some(&input), ctx.env, Some(ctx.stack_base))
        .map_err(|e| {
            err(
                "D3121",
                pos,
                format!(
                    "Dynamic error evaluating the expression passed to function eval: {}",
                    e.message
                ),
            )
        })?;
    Ok(r.map(from_owned))
}
