//! EventBridge event patterns: parsing with validation, and matching against events.
//!
//! Implements the content-filtering syntax of EventBridge rules (as in AWS's Event Ruler):
//! - a pattern is a JSON object with the same nesting as the events it matches; every field named
//!   must match (AND), and a leaf is a non-empty array whose entries are alternatives (OR);
//! - leaf entries: exact strings, numbers (compared numerically), `true`/`false`, `null`, or an
//!   object with one operator: `prefix`, `suffix` (each optionally `{"equals-ignore-case": s}`),
//!   `equals-ignore-case`, `wildcard`, `anything-but` (value, list, `prefix`, `suffix`,
//!   `equals-ignore-case`, `wildcard`), `numeric` (`=`, or one lower and/or one upper bound),
//!   `exists`, `cidr` (IPv4 and IPv6);
//! - `"$or": [{...}, {...}]` (two or more sub-patterns) at any object level;
//! - arrays in the event: a leaf matches when any element matches; an array of objects matches a
//!   nested pattern when one element matches all of it (array-consistent matching);
//! - `exists` only sees leaves: an absent field, an empty array or an object is "not existing".
//!
//! String operators only match string values, `numeric` only JSON numbers, and `anything-but`
//! never matches an absent field.
//!
//! Parity details taken from AWS Event Ruler (the matcher behind EventBridge) and checked by the
//! table in `tests/data/pattern-parity.json`:
//! - `null` is a value: `[null]` matches it, `exists: true` sees it, and every `anything-but`
//!   (also with `prefix`, `suffix`, `equals-ignore-case` or `wildcard`) matches it, as it matches
//!   numbers and booleans: Ruler compares the JSON text, where `5` never equals or starts with a
//!   quoted string;
//! - `anything-but` takes a list under `prefix`, `suffix`, `equals-ignore-case` and `wildcard`;
//! - an exact number may lie outside -5e9..5e9 (account ids), `numeric` ranges and number
//!   `anything-but` lists may not, and an event number outside that range never matches `numeric`;
//! - field names are dotted paths: `{"detail.state": [...]}` is `{"detail": {"state": [...]}}`,
//!   and an event key `"a.b"` is the field `b` under `a`;
//! - wildcard values whose states can all be live at once on one field are refused as too
//!   complex, like EventBridge's `Rule is too complex` (an estimate: see [`WILDCARD_COMPLEXITY_LIMIT`]).

use std::net::IpAddr;

use serde_json::{Map, Value};
use thiserror::Error;

/// Numeric limits EventBridge accepts in patterns (inclusive).
const NUMERIC_LIMIT: f64 = 5.0e9;

/// The most wildcard states that may be live at once on one field. Event Ruler measures a rule's
/// complexity as the number of wildcard patterns a worst-case value keeps alive at once, and
/// EventBridge refuses a rule above its limit with `Rule is too complex`. The limit is not
/// published; we count, per field, the `*`s of the wildcard values whose literal starts are
/// compatible (one is a prefix of the other), and refuse more than 7: a publicly reported rule
/// with three values like `*:stack/NAME/*` (6) was accepted, the same rule with four (8) refused.
pub const WILDCARD_COMPLEXITY_LIMIT: usize = 7;

/// EventBridge's reason for a rule whose wildcards are too complex.
const TOO_COMPLEX: &str = "Rule is too complex - try using fewer wildcard characters or fewer repeating character sequences after a wildcard character";

/// A pattern that cannot be used, with the place in the pattern that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid event pattern at {path}: {message}")]
pub struct PatternError {
    /// Where in the pattern, e.g. `detail.state[0].numeric`; `$` is the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A validated EventBridge event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPattern {
    root: ObjectPattern,
}

#[derive(Debug, Clone, PartialEq)]
struct ObjectPattern {
    fields: Vec<(String, FieldPattern)>,
    /// Each entry is one `$or`: at least one of its alternatives must match.
    ors: Vec<Vec<ObjectPattern>>,
}

#[derive(Debug, Clone, PartialEq)]
enum FieldPattern {
    Nested(ObjectPattern),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    String(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(Scalar),
    Prefix { value: String, ignore_case: bool },
    Suffix { value: String, ignore_case: bool },
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Exists(bool),
    Cidr(Cidr),
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    /// Strings or numbers (never mixed).
    Values(Vec<Scalar>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    EqualsIgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

#[derive(Debug, Clone, PartialEq)]
struct Range {
    lower: Option<(f64, bool)>,
    upper: Option<(f64, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// A wildcard pattern split into literal segments around each unescaped `*`.
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    segments: Vec<String>,
}

impl EventPattern {
    /// Parses and validates a pattern given as JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, PatternError> {
        let value: Value = serde_json::from_str(text).map_err(|e| PatternError {
            path: "$".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        Self::parse(&value)
    }

    /// Parses and validates a pattern given as a JSON value.
    pub fn parse(pattern: &Value) -> Result<Self, PatternError> {
        let Value::Object(map) = pattern else {
            return Err(err("$", "a pattern must be a JSON object"));
        };
        Ok(EventPattern {
            root: parse_object(map, "")?,
        })
    }

    /// Whether `event` (the whole EventBridge envelope) matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        if has_dotted_key(event) {
            self.root.matches(Some(&expand_dotted(event)))
        } else {
            self.root.matches(Some(event))
        }
    }
}

/// Whether any object key in `value` contains a dot (then the event is expanded first).
fn has_dotted_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains('.') || has_dotted_key(v)),
        Value::Array(items) => items.iter().any(has_dotted_key),
        _ => false,
    }
}

/// The event with every key `a.b` turned into `b` under `a`, as Event Ruler names fields by
/// their dotted path. Where `a` is already something else than an object, both values are kept
/// as an array (a leaf pattern sees the scalar, a nested one the object).
fn expand_dotted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let v = expand_dotted(v);
                let mut parts = k.split('.').rev();
                let last = parts.next().unwrap_or_default();
                let mut nested = v;
                let mut key = last.to_string();
                for head in parts {
                    nested = Value::Object(Map::from_iter([(key, nested)]));
                    key = head.to_string();
                }
                merge_field(&mut out, key, nested);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(expand_dotted).collect()),
        scalar => scalar.clone(),
    }
}

fn merge_field(map: &mut Map<String, Value>, key: String, value: Value) {
    match (map.get_mut(&key), value) {
        (None, value) => {
            map.insert(key, value);
        }
        (Some(Value::Object(existing)), Value::Object(more)) => {
            for (k, v) in more {
                merge_field(existing, k, v);
            }
        }
        (Some(Value::Array(existing)), value) => existing.push(value),
        (Some(existing), value) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

fn err(path: &str, message: impl Into<String>) -> PatternError {
    PatternError {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.to_string()
        },
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn parse_object(map: &Map<String, Value>, path: &str) -> Result<ObjectPattern, PatternError> {
    if map.is_empty() {
        return Err(err(path, "empty objects are not allowed"));
    }
    let mut out = ObjectPattern {
        fields: Vec::new(),
        ors: Vec::new(),
    };
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            out.ors.push(parse_or(value, &here)?);
            continue;
        }
        let field = match value {
            Value::Object(inner) => FieldPattern::Nested(parse_object(inner, &here)?),
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(err(&here, "a match list must not be empty"));
                }
                let matchers = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_matcher(item, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                check_wildcard_complexity(&matchers, &here)?;
                FieldPattern::Leaf(matchers)
            }
            other => {
                return Err(err(
                    &here,
                    format!(
                        "a field's value must be a non-empty array of match values or an object, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        insert_field(&mut out.fields, key, field);
    }
    Ok(out)
}

/// Adds a field, a dotted name `a.b` as `b` under `a`. Nested patterns under one name merge;
/// a second match list for the same path replaces the first, as Event Ruler does.
fn insert_field(fields: &mut Vec<(String, FieldPattern)>, key: &str, field: FieldPattern) {
    if let Some((head, rest)) = key.split_once('.') {
        let mut inner = Vec::new();
        insert_field(&mut inner, rest, field);
        let nested = FieldPattern::Nested(ObjectPattern {
            fields: inner,
            ors: Vec::new(),
        });
        return insert_field(fields, head, nested);
    }
    let same = fields.iter_mut().find(|(k, f)| {
        k == key
            && matches!(
                (f, &field),
                (FieldPattern::Nested(_), FieldPattern::Nested(_))
                    | (FieldPattern::Leaf(_), FieldPattern::Leaf(_))
            )
    });
    match (same, field) {
        (Some((_, FieldPattern::Nested(existing))), FieldPattern::Nested(more)) => {
            for (k, f) in more.fields {
                insert_field(&mut existing.fields, &k, f);
            }
            existing.ors.extend(more.ors);
        }
        (Some((_, existing)), field) => *existing = field,
        (None, field) => fields.push((key.to_string(), field)),
    }
}

/// Refuses a match list whose wildcard values could keep more than
/// [`WILDCARD_COMPLEXITY_LIMIT`] wildcard states alive at once.
fn check_wildcard_complexity(matchers: &[Matcher], path: &str) -> Result<(), PatternError> {
    let starred: Vec<(&str, usize)> = matchers
        .iter()
        .flat_map(|m| match m {
            Matcher::Wildcard(w) => std::slice::from_ref(w),
            Matcher::AnythingBut(AnythingBut::Wildcard(list)) => list.as_slice(),
            _ => &[],
        })
        .filter(|w| w.segments.len() > 1)
        .map(|w| (w.segments[0].as_str(), w.segments.len() - 1))
        .collect();
    let complexity = starred
        .iter()
        .map(|(start, _)| {
            starred
                .iter()
                .filter(|(other, _)| start.starts_with(other))
                .map(|(_, stars)| stars)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    if complexity > WILDCARD_COMPLEXITY_LIMIT {
        return Err(err(
            path,
            format!(
                "{TOO_COMPLEX} ({complexity} wildcard states could be live at once; at most {WILDCARD_COMPLEXITY_LIMIT})"
            ),
        ));
    }
    Ok(())
}

fn parse_or(value: &Value, path: &str) -> Result<Vec<ObjectPattern>, PatternError> {
    let Value::Array(items) = value else {
        return Err(err(path, "\"$or\" must be an array of pattern objects"));
    };
    if items.len() < 2 {
        return Err(err(
            path,
            "\"$or\" needs at least two pattern objects to choose from",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = format!("{path}[{i}]");
            match item {
                Value::Object(map) => {
                    if let Some(op) = map.keys().find(|k| OPERATORS.contains(&k.as_str())) {
                        return Err(err(
                            &here,
                            format!(
                                "\"$or\" alternatives are patterns over fields; operator \"{op}\" must sit inside a field's match list"
                            ),
                        ));
                    }
                    parse_object(map, &here)
                }
                other => Err(err(
                    &here,
                    format!("\"$or\" entries must be objects, found {}", describe(other)),
                )),
            }
        })
        .collect()
}

const OPERATORS: [&str; 9] = [
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
    "$or",
];

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_matcher(item: &Value, path: &str) -> Result<Matcher, PatternError> {
    match item {
        Value::Null => Ok(Matcher::Exact(Scalar::Null)),
        Value::Bool(b) => Ok(Matcher::Exact(Scalar::Bool(*b))),
        Value::String(s) => Ok(Matcher::Exact(Scalar::String(s.clone()))),
        // Any number: an exact value outside the numeric range (an account id) is compared as is.
        Value::Number(n) => Ok(Matcher::Exact(Scalar::Number(n.as_f64().ok_or_else(
            || {
                err(
                    path,
                    "Match value must be String, number, true, false, or null",
                )
            },
        )?))),
        Value::Array(_) => Err(err(path, "nested arrays are not allowed in a match list")),
        Value::Object(map) => {
            if map.len() != 1 {
                return Err(err(
                    path,
                    format!(
                        "a match object must have exactly one operator, found {} keys",
                        map.len()
                    ),
                ));
            }
            let (op, arg) = map.iter().next().expect("one key");
            let here = format!("{path}.{op}");
            match op.as_str() {
                "prefix" => {
                    let (value, ignore_case) = string_or_ignore_case(arg, &here)?;
                    Ok(Matcher::Prefix { value, ignore_case })
                }
                "suffix" => {
                    let (value, ignore_case) = string_or_ignore_case(arg, &here)?;
                    Ok(Matcher::Suffix { value, ignore_case })
                }
                "equals-ignore-case" => Ok(Matcher::EqualsIgnoreCase(string(arg, &here)?)),
                "wildcard" => Ok(Matcher::Wildcard(Wildcard::parse(
                    &string(arg, &here)?,
                    &here,
                )?)),
                "anything-but" => Ok(Matcher::AnythingBut(parse_anything_but(arg, &here)?)),
                "numeric" => Ok(Matcher::Numeric(parse_range(arg, &here)?)),
                "exists" => match arg {
                    Value::Bool(b) => Ok(Matcher::Exists(*b)),
                    other => Err(err(
                        &here,
                        format!("\"exists\" takes true or false, found {}", describe(other)),
                    )),
                },
                "cidr" => Ok(Matcher::Cidr(Cidr::parse(&string(arg, &here)?, &here)?)),
                other => Err(err(
                    path,
                    format!(
                        "unknown operator \"{other}\" (expected one of prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr)"
                    ),
                )),
            }
        }
    }
}

fn string(arg: &Value, path: &str) -> Result<String, PatternError> {
    match arg {
        Value::String(s) => Ok(s.clone()),
        other => Err(err(
            path,
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

fn number(arg: &Value, path: &str) -> Result<f64, PatternError> {
    let n = arg
        .as_f64()
        .ok_or_else(|| err(path, format!("expected a number, found {}", describe(arg))))?;
    if !(-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&n) {
        return Err(err(
            path,
            format!("number {n} is outside the range EventBridge supports (-5.0e9 to 5.0e9)"),
        ));
    }
    Ok(n)
}

/// `"text"` or `{"equals-ignore-case": "text"}` (the argument of prefix and suffix).
fn string_or_ignore_case(arg: &Value, path: &str) -> Result<(String, bool), PatternError> {
    match arg {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(map) if map.len() == 1 && map.contains_key("equals-ignore-case") => Ok((
            string(
                &map["equals-ignore-case"],
                &format!("{path}.equals-ignore-case"),
            )?,
            true,
        )),
        other => Err(err(
            path,
            format!(
                "expected a string or {{\"equals-ignore-case\": string}}, found {}",
                describe(other)
            ),
        )),
    }
}

fn parse_anything_but(arg: &Value, path: &str) -> Result<AnythingBut, PatternError> {
    match arg {
        Value::String(s) => Ok(AnythingBut::Values(vec![Scalar::String(s.clone())])),
        Value::Number(_) => Ok(AnythingBut::Values(vec![Scalar::Number(number(
            arg, path,
        )?)])),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(err(path, "\"anything-but\" list must not be empty"));
            }
            if let Some(other) = items.iter().find(|v| !v.is_string() && !v.is_number()) {
                return Err(err(
                    path,
                    format!(
                        "Inside anything but list, start|null|boolean is not supported: found {}",
                        describe(other)
                    ),
                ));
            }
            let all_strings = items.iter().all(Value::is_string);
            let all_numbers = items.iter().all(Value::is_number);
            if !all_strings && !all_numbers {
                return Err(err(
                    path,
                    "Inside anything but list, either all values are number or string, mixed type is not supported: \"anything-but\" list must contain only strings or only numbers",
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(Scalar::String(s.clone())),
                    _ => Ok(Scalar::Number(number(v, &format!("{path}[{i}]"))?)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(AnythingBut::Values)
        }
        Value::Object(map) => {
            if map.len() != 1 {
                return Err(err(
                    path,
                    "\"anything-but\" object must have exactly one of prefix, suffix, equals-ignore-case, wildcard",
                ));
            }
            let (op, inner) = map.iter().next().expect("one key");
            let here = format!("{path}.{op}");
            match op.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(affixes(inner, &here)?)),
                "suffix" => Ok(AnythingBut::Suffix(affixes(inner, &here)?)),
                "equals-ignore-case" => Ok(AnythingBut::EqualsIgnoreCase(strings(inner, &here)?)),
                "wildcard" => strings(inner, &here)?
                    .iter()
                    .map(|s| Wildcard::parse(s, &here))
                    .collect::<Result<Vec<_>, _>>()
                    .map(AnythingBut::Wildcard),
                other => Err(err(
                    path,
                    format!(
                        "unsupported operator \"{other}\" inside \"anything-but\" (expected prefix, suffix, equals-ignore-case or wildcard)"
                    ),
                )),
            }
        }
        other => Err(err(
            path,
            format!(
                "\"anything-but\" takes a string, a number, a list of them or an operator object, found {}",
                describe(other)
            ),
        )),
    }
}

/// The strings of `anything-but` `prefix` / `suffix`: one or a list, none empty.
fn affixes(arg: &Value, path: &str) -> Result<Vec<String>, PatternError> {
    let list = strings(arg, path).map_err(|_| {
        err(
            path,
            format!(
                "prefix/suffix match pattern must be a string or a non-empty list of strings, found {}",
                describe(arg)
            ),
        )
    })?;
    if list.iter().any(String::is_empty) {
        return Err(err(
            path,
            "must not be empty (EventBridge: Null prefix/suffix not allowed)",
        ));
    }
    Ok(list)
}

/// A string or a non-empty list of strings.
fn strings(arg: &Value, path: &str) -> Result<Vec<String>, PatternError> {
    match arg {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, &format!("{path}[{i}]")))
            .collect(),
        other => Err(err(
            path,
            format!(
                "expected a string or a non-empty list of strings, found {}",
                describe(other)
            ),
        )),
    }
}

fn parse_range(arg: &Value, path: &str) -> Result<Range, PatternError> {
    let Value::Array(items) = arg else {
        return Err(err(
            path,
            "\"numeric\" takes an array like [\">\", 0, \"<=\", 5]",
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(err(
            path,
            "\"numeric\" takes one or two (operator, number) pairs",
        ));
    }
    let mut range = Range {
        lower: None,
        upper: None,
    };
    for (i, pair) in items.chunks(2).enumerate() {
        let op = pair[0].as_str().ok_or_else(|| {
            err(
                &format!("{path}[{}]", i * 2),
                "expected an operator string: =, <, <=, > or >=",
            )
        })?;
        let n = number(&pair[1], &format!("{path}[{}]", i * 2 + 1))?;
        let op_path = format!("{path}[{}]", i * 2);
        match op {
            "=" => {
                if items.len() != 2 {
                    return Err(err(&op_path, "\"=\" cannot be combined with other bounds"));
                }
                range.lower = Some((n, true));
                range.upper = Some((n, true));
            }
            ">" | ">=" => {
                if range.lower.is_some() || range.upper.is_some() {
                    return Err(err(
                        &op_path,
                        "the lower bound (> or >=) must come first and only once",
                    ));
                }
                range.lower = Some((n, op == ">="));
            }
            "<" | "<=" => {
                if range.upper.is_some() {
                    return Err(err(&op_path, "only one upper bound (< or <=) is allowed"));
                }
                range.upper = Some((n, op == "<="));
            }
            other => {
                return Err(err(
                    &op_path,
                    format!("unknown numeric operator \"{other}\" (expected =, <, <=, > or >=)"),
                ));
            }
        }
    }
    if let (Some((lo, _)), Some((hi, _))) = (range.lower, range.upper)
        && lo > hi
    {
        return Err(err(
            path,
            format!("the lower bound {lo} is above the upper bound {hi}"),
        ));
    }
    Ok(range)
}

impl Range {
    fn contains(&self, n: f64) -> bool {
        let above = match self.lower {
            None => true,
            Some((lo, inclusive)) => n > lo || (inclusive && n == lo),
        };
        let below = match self.upper {
            None => true,
            Some((hi, inclusive)) => n < hi || (inclusive && n == hi),
        };
        above && below
    }
}

impl Cidr {
    fn parse(text: &str, path: &str) -> Result<Self, PatternError> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            err(
                path,
                format!("\"{text}\" is not an IP address or CIDR block"),
            )
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| err(path, format!("bad prefix length in \"{text}\"")))?,
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }

    fn contains(&self, text: &str) -> bool {
        let Ok(ip) = text.parse::<IpAddr>() else {
            return false;
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                (u32::from(net) & mask) == (u32::from(ip) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

impl Wildcard {
    /// Positions in the errors are Event Ruler's: byte offsets in the quoted value (`"text"`).
    fn parse(text: &str, path: &str) -> Result<Self, PatternError> {
        let mut segments = vec![String::new()];
        let mut chars = text.char_indices();
        let mut last_was_star = false;
        while let Some((at, c)) = chars.next() {
            match c {
                '*' => {
                    if last_was_star {
                        return Err(err(
                            path,
                            format!(
                                "Consecutive wildcard characters at pos {at}: consecutive wildcard characters are not allowed in \"{text}\""
                            ),
                        ));
                    }
                    segments.push(String::new());
                    last_was_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '\\'))) => segments.last_mut().expect("segment").push(e),
                    _ => {
                        return Err(err(
                            path,
                            format!(
                                "Invalid escape character at pos {}: in \"{text}\" a backslash may only escape '*' or another backslash",
                                at + 1
                            ),
                        ));
                    }
                },
                c => segments.last_mut().expect("segment").push(c),
            }
            last_was_star = false;
        }
        Ok(Wildcard { segments })
    }

    fn matches(&self, s: &str) -> bool {
        let [first, middle @ .., last] = self.segments.as_slice() else {
            return s == self.segments[0];
        };
        if !s.starts_with(first.as_str()) {
            return false;
        }
        let mut rest = &s[first.len()..];
        for seg in middle {
            match rest.find(seg.as_str()) {
                Some(at) => rest = &rest[at + seg.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last.as_str())
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.to_lowercase().starts_with(&prefix.to_lowercase())
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.to_lowercase().ends_with(&suffix.to_lowercase())
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl ObjectPattern {
    /// `event` is the value at this object's position; `None` when absent.
    fn matches(&self, event: Option<&Value>) -> bool {
        match event {
            // Array-consistent: one element must satisfy the whole object pattern.
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter().any(|item| self.matches(Some(item)))
            }
            Some(Value::Object(map)) => self.matches_fields(|key| map.get(key)),
            _ => self.matches_fields(|_| None),
        }
    }

    fn matches_fields<'a>(&self, get: impl Fn(&str) -> Option<&'a Value> + Copy) -> bool {
        self.fields.iter().all(|(key, field)| match field {
            FieldPattern::Nested(inner) => inner.matches(get(key)),
            FieldPattern::Leaf(matchers) => leaf_matches(matchers, get(key)),
        }) && self
            .ors
            .iter()
            .all(|alternatives| alternatives.iter().any(|alt| alt.matches_fields(get)))
    }
}

/// Collects the scalar leaves at a position: arrays are flattened, objects are not leaves.
fn leaves<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(_) => {}
        scalar => out.push(scalar),
    }
}

fn leaf_matches(matchers: &[Matcher], event: Option<&Value>) -> bool {
    let mut values = Vec::new();
    if let Some(v) = event {
        leaves(v, &mut values);
    }
    matchers.iter().any(|m| match m {
        Matcher::Exists(want) => *want != values.is_empty(),
        m => values.iter().any(|v| m.matches_scalar(v)),
    })
}

impl Matcher {
    fn matches_scalar(&self, value: &Value) -> bool {
        match self {
            Matcher::Exact(expected) => scalar_eq(expected, value),
            Matcher::Prefix {
                value: p,
                ignore_case,
            } => value.as_str().is_some_and(|s| {
                if *ignore_case {
                    starts_with_ignore_case(s, p)
                } else {
                    s.starts_with(p.as_str())
                }
            }),
            Matcher::Suffix {
                value: p,
                ignore_case,
            } => value.as_str().is_some_and(|s| {
                if *ignore_case {
                    ends_with_ignore_case(s, p)
                } else {
                    s.ends_with(p.as_str())
                }
            }),
            Matcher::EqualsIgnoreCase(expected) => {
                value.as_str().is_some_and(|s| eq_ignore_case(s, expected))
            }
            Matcher::Wildcard(w) => value.as_str().is_some_and(|s| w.matches(s)),
            Matcher::AnythingBut(but) => but.matches(value),
            // Event Ruler compares numbers in -5e9..5e9 only; others are plain text to it.
            Matcher::Numeric(range) => value
                .as_f64()
                .filter(|n| value.is_number() && n.abs() <= NUMERIC_LIMIT)
                .is_some_and(|n| range.contains(n)),
            Matcher::Cidr(cidr) => value.as_str().is_some_and(|s| cidr.contains(s)),
            Matcher::Exists(_) => unreachable!("exists is decided on the whole field"),
        }
    }
}

impl AnythingBut {
    /// A number, boolean or null never equals, starts or ends like a string (Event Ruler
    /// compares JSON text, where strings keep their quotes), so the string forms match it.
    fn matches(&self, value: &Value) -> bool {
        let Some(s) = value.as_str() else {
            return match self {
                AnythingBut::Values(excluded) => !excluded.iter().any(|x| scalar_eq(x, value)),
                _ => true,
            };
        };
        match self {
            AnythingBut::Values(excluded) => !excluded.iter().any(|x| scalar_eq(x, value)),
            AnythingBut::Prefix(list) => !list.iter().any(|p| s.starts_with(p.as_str())),
            AnythingBut::Suffix(list) => !list.iter().any(|p| s.ends_with(p.as_str())),
            AnythingBut::EqualsIgnoreCase(list) => !list.iter().any(|x| eq_ignore_case(s, x)),
            AnythingBut::Wildcard(list) => !list.iter().any(|w| w.matches(s)),
        }
    }
}

fn scalar_eq(expected: &Scalar, value: &Value) -> bool {
    match (expected, value) {
        (Scalar::String(a), Value::String(b)) => a == b,
        (Scalar::Number(a), Value::Number(_)) => value.as_f64() == Some(*a),
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Null, Value::Null) => true,
        _ => false,
    }
}
