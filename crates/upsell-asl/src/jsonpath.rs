//! The JSONPath subset that Step Functions accepts (Jayway semantics): `$`, `$$`, `$var`,
//! `.field`, `['field']`, `[n]`, `[*]`, `[a:b]`, `..field`. Reading and ResultPath writing.

use serde_json::{Map, Value};
use std::fmt;

/// Where a path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `$`: the state's effective input.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Variable(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Descend(String),
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    source: String,
    root: Root,
    segments: Vec<Segment>,
    definite: bool,
}

/// Why a path could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSyntaxError(pub String);

impl fmt::Display for PathSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn is_ident_char(c: char) -> bool {
    !matches!(
        c,
        '.' | '[' | ']' | ' ' | '(' | ')' | ',' | '\'' | '"' | '*' | '?' | '@'
    )
}

impl JsonPath {
    /// Parses a path that starts with `$`.
    pub fn parse(src: &str) -> Result<JsonPath, PathSyntaxError> {
        let err = || PathSyntaxError(format!("Invalid JSONPath: {src}"));
        let s = src.trim();
        if !s.starts_with('$') {
            return Err(err());
        }
        let chars: Vec<char> = s.chars().collect();
        let mut i = 1;
        let root = if chars.get(1) == Some(&'$') {
            i = 2;
            Root::Context
        } else if chars
            .get(1)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            Root::Variable(chars[start..i].iter().collect())
        } else {
            Root::Input
        };
        let mut segments = Vec::new();
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    if chars.get(i + 1) == Some(&'.') {
                        i += 2;
                        let start = i;
                        while i < chars.len() && is_ident_char(chars[i]) {
                            i += 1;
                        }
                        if start == i {
                            return Err(err());
                        }
                        segments.push(Segment::Descend(chars[start..i].iter().collect()));
                        continue;
                    }
                    i += 1;
                    if chars.get(i) == Some(&'*') {
                        i += 1;
                        segments.push(Segment::Wildcard);
                        continue;
                    }
                    let start = i;
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                    if start == i {
                        return Err(err());
                    }
                    segments.push(Segment::Field(chars[start..i].iter().collect()));
                }
                '[' => {
                    let close = find_close(&chars, i).ok_or_else(err)?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    i = close + 1;
                    if inner == "*" {
                        segments.push(Segment::Wildcard);
                    } else if (inner.starts_with('\'') && inner.ends_with('\'') && inner.len() >= 2)
                        || (inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2)
                    {
                        let name = inner[1..inner.len() - 1].replace("\\'", "'");
                        segments.push(Segment::Field(name));
                    } else if inner.contains(':') {
                        let parts: Vec<&str> = inner.split(':').collect();
                        if parts.len() > 3 {
                            return Err(err());
                        }
                        let num = |p: &str| -> Result<Option<i64>, PathSyntaxError> {
                            let p = p.trim();
                            if p.is_empty() {
                                Ok(None)
                            } else {
                                p.parse().map(Some).map_err(|_| err())
                            }
                        };
                        let a = num(parts[0])?;
                        let b = num(parts[1])?;
                        let c = if parts.len() == 3 {
                            num(parts[2])?
                        } else {
                            None
                        };
                        segments.push(Segment::Slice(a, b, c));
                    } else {
                        let n: i64 = inner.parse().map_err(|_| err())?;
                        segments.push(Segment::Index(n));
                    }
                }
                _ => return Err(err()),
            }
        }
        let definite = segments
            .iter()
            .all(|s| matches!(s, Segment::Field(_) | Segment::Index(_)));
        Ok(JsonPath {
            source: src.to_string(),
            root,
            segments,
            definite,
        })
    }

    /// The path as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the path starts.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// `$` alone.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// True when the path selects at most one node (no wildcard, slice or descent).
    pub fn is_definite(&self) -> bool {
        self.definite
    }

    /// The path rendered Jayway-style (`$['a']['b']`), used in error messages.
    pub fn bracketed(&self) -> String {
        let mut s = String::from("$");
        for seg in &self.segments {
            match seg {
                Segment::Field(f) => s.push_str(&format!("['{f}']")),
                Segment::Index(n) => s.push_str(&format!("[{n}]")),
                Segment::Wildcard => s.push_str("[*]"),
                Segment::Slice(a, b, _) => s.push_str(&format!(
                    "[{}:{}]",
                    a.map(|x| x.to_string()).unwrap_or_default(),
                    b.map(|x| x.to_string()).unwrap_or_default()
                )),
                Segment::Descend(f) => s.push_str(&format!("..['{f}']")),
            }
        }
        s
    }

    /// Reads the path from `root`. `None` when a definite path does not exist; an
    /// indefinite path returns an array (possibly empty).
    pub fn read(&self, root: &Value) -> Option<Value> {
        if self.definite {
            let mut cur = root;
            for seg in &self.segments {
                cur = match (seg, cur) {
                    (Segment::Field(f), Value::Object(m)) => m.get(f)?,
                    (Segment::Index(n), Value::Array(a)) => {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if idx < 0 {
                            return None;
                        }
                        a.get(idx as usize)?
                    }
                    _ => return None,
                };
            }
            return Some(cur.clone());
        }
        let mut current: Vec<&Value> = vec![root];
        for seg in &self.segments {
            let mut next = Vec::new();
            for v in current {
                match (seg, v) {
                    (Segment::Field(f), Value::Object(m)) => {
                        if let Some(x) = m.get(f) {
                            next.push(x);
                        }
                    }
                    (Segment::Index(n), Value::Array(a)) => {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if idx >= 0
                            && let Some(x) = a.get(idx as usize)
                        {
                            next.push(x);
                        }
                    }
                    (Segment::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                    (Segment::Wildcard, Value::Object(m)) => next.extend(m.values()),
                    (Segment::Slice(a, b, c), Value::Array(arr)) => {
                        let len = arr.len() as i64;
                        let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                        let start = a.map(norm).unwrap_or(0);
                        let end = b.map(norm).unwrap_or(len);
                        let step = c.unwrap_or(1).max(1);
                        let mut k = start;
                        while k < end {
                            next.push(&arr[k as usize]);
                            k += step;
                        }
                    }
                    (Segment::Descend(f), v) => descend(v, f, &mut next),
                    _ => {}
                }
            }
            current = next;
        }
        Some(Value::Array(current.into_iter().cloned().collect()))
    }

    /// True when [`JsonPath::write`] into `target` would succeed (checked without writing).
    pub fn can_write(&self, target: &Value) -> bool {
        // `None`: an object `write` would create on the way.
        let mut cur = Some(target);
        let last = self.segments.len().saturating_sub(1);
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Field(f) => {
                    if i == last {
                        return true;
                    }
                    cur = match cur {
                        Some(Value::Object(m)) => m.get(f),
                        _ => None,
                    };
                }
                Segment::Index(n) => {
                    let Some(Value::Array(a)) = cur else {
                        return false;
                    };
                    let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                    if idx < 0 || idx as usize >= a.len() {
                        return false;
                    }
                    if i == last {
                        return true;
                    }
                    cur = Some(&a[idx as usize]);
                }
                _ => return false,
            }
        }
        true
    }

    /// Writes `value` at this (definite, `$`-rooted) path inside `target`, creating
    /// intermediate objects as needed (ResultPath semantics).
    pub fn write(&self, target: &mut Value, value: Value) -> Result<(), String> {
        if self.segments.is_empty() {
            *target = value;
            return Ok(());
        }
        let mut cur = target;
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Field(f) => {
                    if !cur.is_object() {
                        *cur = Value::Object(Map::new());
                    }
                    let m = cur.as_object_mut().expect("object");
                    if i == last {
                        m.insert(f.clone(), value);
                        return Ok(());
                    }
                    cur = m.entry(f.clone()).or_insert(Value::Object(Map::new()));
                }
                Segment::Index(n) => {
                    let Value::Array(a) = cur else {
                        return Err(format!("Invalid path {}: not an array", self.source));
                    };
                    let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                    if idx < 0 || idx as usize >= a.len() {
                        return Err(format!("Invalid path {}: index out of bounds", self.source));
                    }
                    if i == last {
                        a[idx as usize] = value;
                        return Ok(());
                    }
                    cur = &mut a[idx as usize];
                }
                _ => {
                    return Err(format!(
                        "Invalid ResultPath {}: must be definite",
                        self.source
                    ));
                }
            }
        }
        Ok(())
    }
}

fn descend<'a>(v: &'a Value, f: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(f) {
                out.push(x);
            }
            for x in m.values() {
                descend(x, f, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                descend(x, f, out);
            }
        }
        _ => {}
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut i = open + 1;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == ']' {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_definite_and_indefinite_paths() {
        let v = json!({"a": {"b": [1, 2, 3]}, "c-d": 4});
        assert_eq!(
            JsonPath::parse("$.a.b[1]").unwrap().read(&v),
            Some(json!(2))
        );
        assert_eq!(
            JsonPath::parse("$.a.b[-1]").unwrap().read(&v),
            Some(json!(3))
        );
        assert_eq!(
            JsonPath::parse("$.a.b[1:]").unwrap().read(&v),
            Some(json!([2, 3]))
        );
        assert_eq!(
            JsonPath::parse("$['c-d']").unwrap().read(&v),
            Some(json!(4))
        );
        assert_eq!(JsonPath::parse("$.c-d").unwrap().read(&v), Some(json!(4)));
        assert_eq!(JsonPath::parse("$.x").unwrap().read(&v), None);
        assert_eq!(JsonPath::parse("$.x[*]").unwrap().read(&v), Some(json!([])));
        assert_eq!(
            JsonPath::parse("$..b").unwrap().read(&v),
            Some(json!([[1, 2, 3]]))
        );
    }

    #[test]
    fn writes_nested_result_paths() {
        let mut v = json!({"a": 1});
        JsonPath::parse("$.x.y")
            .unwrap()
            .write(&mut v, json!(2))
            .unwrap();
        assert_eq!(v, json!({"a": 1, "x": {"y": 2}}));
    }

    #[test]
    fn parses_roots() {
        assert_eq!(
            JsonPath::parse("$$.Execution.Id").unwrap().root(),
            &Root::Context
        );
        assert_eq!(
            JsonPath::parse("$var.x").unwrap().root(),
            &Root::Variable("var".into())
        );
        assert!(JsonPath::parse("a.b").is_err());
    }
}
