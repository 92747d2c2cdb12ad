//! DynamoDB expressions over DynamoDB-JSON items: condition and filter expressions, update
//! expressions and key conditions, with `ExpressionAttributeNames` (`#n`) and
//! `ExpressionAttributeValues` (`:v`).
//!
//! Supported: comparisons (`= <> < <= > >=`), `BETWEEN`, `IN`, `AND`/`OR`/`NOT`, parentheses,
//! `attribute_exists`, `attribute_not_exists`, `attribute_type`, `begins_with`, `contains`,
//! `size`; document paths with `.field` and `[index]`; `SET` (with `+`, `-`, `if_not_exists`,
//! `list_append`), `REMOVE`, `ADD` (numbers and sets) and `DELETE` (sets).

use serde_json::{Map, Value};

/// A malformed expression or a bad operand; becomes a DynamoDB `ValidationException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError(pub String);

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError(msg.into()))
}

/// One step of a document path.
#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    /// `.name`
    Field(String),
    /// `[n]`
    Index(usize),
}

/// A document path, e.g. `a.b[2].c`.
pub type Path = Vec<PathPart>;

/// An operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// An attribute of the item.
    Path(Path),
    /// A `:value`, already looked up.
    Value(Value),
    /// `size(path)`
    Size(Path),
}

/// A condition (also filter expressions and key conditions).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `a op b`
    Compare(Operand, String, Operand),
    /// `a BETWEEN b AND c`
    Between(Operand, Operand, Operand),
    /// `a IN (b, c, ...)`
    In(Operand, Vec<Operand>),
    /// `attribute_exists(p)`
    Exists(Path),
    /// `attribute_not_exists(p)`
    NotExists(Path),
    /// `attribute_type(p, :t)`
    Type(Path, Operand),
    /// `begins_with(p, v)`
    BeginsWith(Operand, Operand),
    /// `contains(p, v)`
    Contains(Operand, Operand),
    /// `AND`
    And(Box<Cond>, Box<Cond>),
    /// `OR`
    Or(Box<Cond>, Box<Cond>),
    /// `NOT`
    Not(Box<Cond>),
}

/// The right-hand side of a `SET` action.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    /// A plain operand.
    Operand(SetOperand),
    /// `a + b`
    Plus(SetOperand, SetOperand),
    /// `a - b`
    Minus(SetOperand, SetOperand),
}

/// An operand of a `SET` value.
#[derive(Debug, Clone, PartialEq)]
pub enum SetOperand {
    /// A path or value.
    Operand(Operand),
    /// `if_not_exists(path, value)`
    IfNotExists(Path, Box<SetOperand>),
    /// `list_append(a, b)`
    ListAppend(Box<SetOperand>, Box<SetOperand>),
}

/// One update action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `SET path = value`
    Set(Path, SetValue),
    /// `REMOVE path`
    Remove(Path),
    /// `ADD path value`
    Add(Path, Operand),
    /// `DELETE path value`
    Delete(Path, Operand),
}

/// Names and values an expression refers to.
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
    /// `ExpressionAttributeNames`
    pub names: Option<&'a Map<String, Value>>,
    /// `ExpressionAttributeValues`
    pub values: Option<&'a Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Name(String),
    Value(String),
    Num(usize),
    Sym(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let word = |start: usize| {
            let mut j = start;
            while j < chars.len()
                && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '-')
            {
                j += 1;
            }
            (chars[start..j].iter().collect::<String>(), j)
        };
        match c {
            '#' | ':' => {
                let (w, j) = word(i + 1);
                if w.is_empty() {
                    return fail(format!("Invalid expression: a bare '{c}' at position {i}"));
                }
                out.push(if c == '#' {
                    Tok::Name(format!("#{w}"))
                } else {
                    Tok::Value(format!(":{w}"))
                });
                i = j;
            }
            '(' | ')' | ',' | '.' | '[' | ']' | '+' | '-' | '=' => {
                out.push(Tok::Sym(match c {
                    '(' => "(",
                    ')' => ")",
                    ',' => ",",
                    '.' => ".",
                    '[' => "[",
                    ']' => "]",
                    '+' => "+",
                    '-' => "-",
                    _ => "=",
                }));
                i += 1;
            }
            '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let sym = match (c, next) {
                    ('<', Some('=')) => "<=",
                    ('<', Some('>')) => "<>",
                    ('>', Some('=')) => ">=",
                    ('<', _) => "<",
                    _ => ">",
                };
                i += sym.len();
                out.push(Tok::Sym(sym));
            }
            d if d.is_ascii_digit() => {
                let mut j = i;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                let n: String = chars[i..j].iter().collect();
                out.push(Tok::Num(
                    n.parse().map_err(|_| ExprError(format!("bad index {n}")))?,
                ));
                i = j;
            }
            a if a.is_alphabetic() || a == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push(Tok::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            other => {
                return fail(format!(
                    "Invalid expression: unexpected character '{other}'"
                ));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    b: Bindings<'a>,
    used_names: Vec<String>,
    used_values: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(src: &str, b: Bindings<'a>) -> Result<Self, ExprError> {
        Ok(Parser {
            toks: tokenize(src)?,
            pos: 0,
            b,
            used_names: Vec::new(),
            used_values: Vec::new(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ExprError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            fail(format!(
                "Invalid expression: expected '{s}' {}",
                self.here()
            ))
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            None => "at the end".into(),
            Some(t) => format!("near {}", tok_text(t)),
        }
    }

    fn done(&self) -> Result<(), ExprError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => fail(format!("Invalid expression: unexpected {}", tok_text(t))),
        }
    }

    fn path(&mut self) -> Result<Path, ExprError> {
        let mut path = vec![PathPart::Field(self.path_name()?)];
        loop {
            if self.eat_sym(".") {
                path.push(PathPart::Field(self.path_name()?));
            } else if self.eat_sym("[") {
                let Some(Tok::Num(n)) = self.peek().cloned() else {
                    return fail(format!(
                        "Invalid expression: expected a list index {}",
                        self.here()
                    ));
                };
                self.pos += 1;
                self.expect_sym("]")?;
                path.push(PathPart::Index(n));
            } else {
                return Ok(path);
            }
        }
    }

    fn path_name(&mut self) -> Result<String, ExprError> {
        match self.peek().cloned() {
            Some(Tok::Ident(w)) => {
                self.pos += 1;
                if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&w)) {
                    return fail(format!(
                        "Invalid expression: Attribute name is a reserved keyword; reserved keyword: {w}"
                    ));
                }
                Ok(w)
            }
            Some(Tok::Name(n)) => {
                self.pos += 1;
                self.used_names.push(n.clone());
                match self.b.names.and_then(|m| m.get(&n)).and_then(Value::as_str) {
                    Some(real) => Ok(real.to_string()),
                    None => fail(format!(
                        "Value provided in ExpressionAttributeNames unused in expressions or undefined: An expression attribute name used in the document path is not defined; attribute name: {n}"
                    )),
                }
            }
            _ => fail(format!(
                "Invalid expression: expected an attribute name {}",
                self.here()
            )),
        }
    }

    fn value_ref(&mut self, v: &str) -> Result<Value, ExprError> {
        self.used_values.push(v.to_string());
        match self.b.values.and_then(|m| m.get(v)) {
            Some(val) => {
                check_attribute_value(val).map_err(|e| {
                    ExprError(format!(
                        "ExpressionAttributeValues contains invalid value: {e} for key {v}"
                    ))
                })?;
                Ok(val.clone())
            }
            None => fail(format!(
                "Invalid expression: An expression attribute value used in expression is not defined; attribute value: {v}"
            )),
        }
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.pos += 1;
                Ok(Operand::Value(self.value_ref(&v)?))
            }
            Some(Tok::Ident(w))
                if w == "size" && matches!(self.toks.get(self.pos + 1), Some(Tok::Sym("("))) =>
            {
                self.pos += 2;
                let p = self.path()?;
                self.expect_sym(")")?;
                Ok(Operand::Size(p))
            }
            _ => Ok(Operand::Path(self.path()?)),
        }
    }

    fn path_arg(&mut self, func: &str) -> Result<Path, ExprError> {
        match self.operand()? {
            Operand::Path(p) => Ok(p),
            _ => fail(format!(
                "Invalid function: {func} takes an attribute path first"
            )),
        }
    }

    fn cond(&mut self) -> Result<Cond, ExprError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            self.pos += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, ExprError> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            self.pos += 1;
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, ExprError> {
        if self.keyword("NOT") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, ExprError> {
        if self.eat_sym("(") {
            let c = self.cond()?;
            self.expect_sym(")")?;
            return Ok(c);
        }
        if let Some(Tok::Ident(func)) = self.peek().cloned()
            && matches!(self.toks.get(self.pos + 1), Some(Tok::Sym("(")))
            && func != "size"
        {
            self.pos += 2;
            let c = match func.as_str() {
                "attribute_exists" => Cond::Exists(self.path_arg(&func)?),
                "attribute_not_exists" => Cond::NotExists(self.path_arg(&func)?),
                "attribute_type" => {
                    let p = self.path_arg(&func)?;
                    self.expect_sym(",")?;
                    Cond::Type(p, self.operand()?)
                }
                "begins_with" | "contains" => {
                    let a = self.operand()?;
                    self.expect_sym(",")?;
                    let b = self.operand()?;
                    if func == "begins_with" {
                        Cond::BeginsWith(a, b)
                    } else {
                        Cond::Contains(a, b)
                    }
                }
                other => return fail(format!("Invalid function name; function: {other}")),
            };
            self.expect_sym(")")?;
            return Ok(c);
        }
        let left = self.operand()?;
        if self.keyword("BETWEEN") {
            self.pos += 1;
            let lo = self.operand()?;
            if !self.keyword("AND") {
                return fail(format!(
                    "Invalid expression: expected AND in BETWEEN {}",
                    self.here()
                ));
            }
            self.pos += 1;
            let hi = self.operand()?;
            return Ok(Cond::Between(left, lo, hi));
        }
        if self.keyword("IN") {
            self.pos += 1;
            self.expect_sym("(")?;
            let mut list = vec![self.operand()?];
            while self.eat_sym(",") {
                list.push(self.operand()?);
            }
            self.expect_sym(")")?;
            return Ok(Cond::In(left, list));
        }
        let op = match self.peek() {
            Some(Tok::Sym(s)) if ["=", "<>", "<", "<=", ">", ">="].contains(s) => s.to_string(),
            _ => {
                return fail(format!(
                    "Invalid expression: expected a comparator {}",
                    self.here()
                ));
            }
        };
        self.pos += 1;
        Ok(Cond::Compare(left, op, self.operand()?))
    }

    fn set_operand(&mut self) -> Result<SetOperand, ExprError> {
        if let Some(Tok::Ident(func)) = self.peek().cloned()
            && matches!(self.toks.get(self.pos + 1), Some(Tok::Sym("(")))
            && (func == "if_not_exists" || func == "list_append")
        {
            self.pos += 2;
            let out = if func == "if_not_exists" {
                let p = self.path_arg(&func)?;
                self.expect_sym(",")?;
                SetOperand::IfNotExists(p, Box::new(self.set_operand()?))
            } else {
                let a = self.set_operand()?;
                self.expect_sym(",")?;
                SetOperand::ListAppend(Box::new(a), Box::new(self.set_operand()?))
            };
            self.expect_sym(")")?;
            return Ok(out);
        }
        Ok(SetOperand::Operand(self.operand()?))
    }

    fn update(&mut self) -> Result<Vec<Action>, ExprError> {
        let mut actions = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        while let Some(tok) = self.peek().cloned() {
            let Tok::Ident(clause) = tok else {
                return fail(format!(
                    "Invalid UpdateExpression: expected SET, REMOVE, ADD or DELETE {}",
                    self.here()
                ));
            };
            let clause = clause.to_ascii_uppercase();
            if seen.contains(&clause) {
                return fail(format!(
                    "Invalid UpdateExpression: The \"{clause}\" section can only be used once in an update expression"
                ));
            }
            seen.push(clause.clone());
            self.pos += 1;
            loop {
                let path = self.path()?;
                actions.push(match clause.as_str() {
                    "SET" => {
                        self.expect_sym("=")?;
                        let a = self.set_operand()?;
                        let value = if self.eat_sym("+") {
                            SetValue::Plus(a, self.set_operand()?)
                        } else if self.eat_sym("-") {
                            SetValue::Minus(a, self.set_operand()?)
                        } else {
                            SetValue::Operand(a)
                        };
                        Action::Set(path, value)
                    }
                    "REMOVE" => Action::Remove(path),
                    "ADD" => Action::Add(path, self.operand()?),
                    "DELETE" => Action::Delete(path, self.operand()?),
                    other => {
                        return fail(format!("Invalid UpdateExpression: unknown clause {other}"));
                    }
                });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if actions.is_empty() {
            return fail("Invalid UpdateExpression: The expression can not be empty;");
        }
        Ok(actions)
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) | Tok::Name(s) | Tok::Value(s) => format!("token: \"{s}\""),
        Tok::Num(n) => format!("token: \"{n}\""),
        Tok::Sym(s) => format!("token: \"{s}\""),
    }
}

/// A few of DynamoDB's reserved words that show up as attribute names in practice.
const RESERVED: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "SET",
    "REMOVE",
    "ADD",
    "DELETE",
    "NAME",
    "STATUS",
    "DATA",
    "VALUE",
    "TIMESTAMP",
    "TTL",
    "TYPE",
    "KEY",
    "DATE",
    "TIME",
    "USER",
    "COUNT",
    "SIZE",
    "ORDER",
    "LEVEL",
    "COMMENT",
    "STATE",
    "RESULT",
    "SOURCE",
    "ITEMS",
];

/// The `#names` and `:values` that a request's expressions used.
#[derive(Debug, Clone, Default)]
pub struct Used {
    names: Vec<String>,
    values: Vec<String>,
}

impl Used {
    /// Notes `#names` used outside the parsed expressions (e.g. in a ProjectionExpression).
    pub fn note_names(&mut self, text: &str) {
        for token in
            text.split(|c: char| !(c.is_alphanumeric() || c == '#' || c == '_' || c == '-'))
        {
            if token.starts_with('#') {
                self.names.push(token.to_string());
            }
        }
    }

    /// DynamoDB rejects names and values that no expression of the request uses.
    pub fn check_all_used(&self, b: Bindings<'_>) -> Result<(), ExprError> {
        let unused = |m: Option<&Map<String, Value>>, used: &[String]| -> Vec<String> {
            m.into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| !used.contains(k))
                .cloned()
                .collect()
        };
        let names = unused(b.names, &self.names);
        if !names.is_empty() {
            return fail(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            ));
        }
        let values = unused(b.values, &self.values);
        if !values.is_empty() {
            return fail(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            ));
        }
        Ok(())
    }
}

/// Parses a condition or filter expression, noting the names and values it uses.
pub fn parse_condition(src: &str, b: Bindings<'_>, used: &mut Used) -> Result<Cond, ExprError> {
    let mut p = Parser::new(src, b)?;
    let c = p.cond()?;
    p.done()?;
    used.names.append(&mut p.used_names);
    used.values.append(&mut p.used_values);
    Ok(c)
}

/// Parses an update expression, noting the names and values it uses.
pub fn parse_update(src: &str, b: Bindings<'_>, used: &mut Used) -> Result<Vec<Action>, ExprError> {
    let mut p = Parser::new(src, b)?;
    let a = p.update()?;
    p.done()?;
    used.names.append(&mut p.used_names);
    used.values.append(&mut p.used_values);
    Ok(a)
}

/// Checks a DynamoDB-JSON attribute value (`{"S": "x"}`, `{"N": "1"}`, `{"M": {...}}`...).
pub fn check_attribute_value(v: &Value) -> Result<(), String> {
    let Some(map) = v.as_object().filter(|m| m.len() == 1) else {
        return Err(format!(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes: {v}"
        ));
    };
    let (ty, inner) = map.iter().next().expect("one entry");
    let ok = match ty.as_str() {
        "S" | "B" => inner.is_string(),
        "N" => inner
            .as_str()
            .is_some_and(|n| n.trim().parse::<f64>().is_ok_and(f64::is_finite)),
        "BOOL" => inner.is_boolean(),
        "NULL" => inner == &Value::Bool(true),
        "SS" | "BS" => inner
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
        "NS" => inner.as_array().is_some_and(|a| {
            !a.is_empty()
                && a.iter()
                    .all(|n| n.as_str().is_some_and(|n| n.parse::<f64>().is_ok()))
        }),
        "L" => {
            return inner
                .as_array()
                .ok_or_else(|| "L must be a list".to_string())?
                .iter()
                .try_for_each(check_attribute_value);
        }
        "M" => {
            return inner
                .as_object()
                .ok_or_else(|| "M must be a map".to_string())?
                .values()
                .try_for_each(check_attribute_value);
        }
        other => return Err(format!("unknown AttributeValue type {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {ty} value {inner}"))
    }
}

/// Looks up a path in an item (a map of attribute name -> attribute value).
pub fn get_path<'v>(item: &'v Map<String, Value>, path: &[PathPart]) -> Option<&'v Value> {
    let (PathPart::Field(first), rest) = path.split_first()? else {
        return None;
    };
    let mut cur = item.get(first)?;
    for part in rest {
        cur = match part {
            PathPart::Field(f) => cur.get("M")?.get(f)?,
            PathPart::Index(i) => cur.get("L")?.get(*i)?,
        };
    }
    Some(cur)
}

fn resolve<'v>(
    item: &'v Map<String, Value>,
    op: &'v Operand,
) -> Result<Option<std::borrow::Cow<'v, Value>>, ExprError> {
    use std::borrow::Cow;
    Ok(match op {
        Operand::Path(p) => get_path(item, p).map(Cow::Borrowed),
        Operand::Value(v) => Some(Cow::Borrowed(v)),
        Operand::Size(p) => match get_path(item, p) {
            None => None,
            Some(v) => {
                let (ty, inner) = type_of(v);
                let n = match ty {
                    "S" => inner.as_str().map_or(0, |s| s.len()),
                    "B" => inner.as_str().map_or(0, |s| s.len() * 3 / 4),
                    "L" | "SS" | "NS" | "BS" => inner.as_array().map_or(0, Vec::len),
                    "M" => inner.as_object().map_or(0, Map::len),
                    _ => return fail(format!("Invalid operand type for size: {ty}")),
                };
                Some(Cow::Owned(serde_json::json!({"N": n.to_string()})))
            }
        },
    })
}

fn type_of(v: &Value) -> (&str, &Value) {
    v.as_object()
        .and_then(|m| m.iter().next())
        .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v))
}

fn num(v: &Value) -> Option<f64> {
    v.as_str().and_then(|s| s.trim().parse().ok())
}

/// Deep equality of attribute values (numbers numerically, sets without order).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    let ((ta, va), (tb, vb)) = (type_of(a), type_of(b));
    if ta != tb {
        return false;
    }
    match ta {
        "N" => num(va) == num(vb),
        "SS" | "BS" | "NS" => {
            let (Some(xa), Some(xb)) = (va.as_array(), vb.as_array()) else {
                return false;
            };
            xa.len() == xb.len()
                && xa.iter().all(|x| {
                    xb.iter()
                        .any(|y| if ta == "NS" { num(x) == num(y) } else { x == y })
                })
        }
        "L" => {
            let (Some(xa), Some(xb)) = (va.as_array(), vb.as_array()) else {
                return false;
            };
            xa.len() == xb.len() && xa.iter().zip(xb).all(|(x, y)| values_equal(x, y))
        }
        "M" => {
            let (Some(xa), Some(xb)) = (va.as_object(), vb.as_object()) else {
                return false;
            };
            xa.len() == xb.len()
                && xa
                    .iter()
                    .all(|(k, x)| xb.get(k).is_some_and(|y| values_equal(x, y)))
        }
        _ => va == vb,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    let ((ta, va), (tb, vb)) = (type_of(a), type_of(b));
    if ta != tb {
        return None;
    }
    match ta {
        "N" => num(va)?.partial_cmp(&num(vb)?),
        "S" | "B" => Some(va.as_str()?.as_bytes().cmp(vb.as_str()?.as_bytes())),
        _ => None,
    }
}

/// Evaluates a condition against an item (an absent item is an empty map).
pub fn eval(cond: &Cond, item: &Map<String, Value>) -> Result<bool, ExprError> {
    Ok(match cond {
        Cond::And(a, b) => eval(a, item)? && eval(b, item)?,
        Cond::Or(a, b) => eval(a, item)? || eval(b, item)?,
        Cond::Not(a) => !eval(a, item)?,
        Cond::Exists(p) => get_path(item, p).is_some(),
        Cond::NotExists(p) => get_path(item, p).is_none(),
        Cond::Type(p, t) => {
            let want = match resolve(item, t)? {
                Some(v) if type_of(&v).0 == "S" => type_of(&v).1.as_str().unwrap_or("").to_string(),
                _ => {
                    return fail(
                        "Invalid attribute type name: attribute_type takes a string value",
                    );
                }
            };
            get_path(item, p).is_some_and(|v| type_of(v).0 == want)
        }
        Cond::Compare(a, op, b) => {
            let (Some(x), Some(y)) = (resolve(item, a)?, resolve(item, b)?) else {
                return Ok(false);
            };
            match op.as_str() {
                "=" => values_equal(&x, &y),
                "<>" => !values_equal(&x, &y),
                _ => match order(&x, &y) {
                    None => false,
                    Some(o) => match op.as_str() {
                        "<" => o.is_lt(),
                        "<=" => o.is_le(),
                        ">" => o.is_gt(),
                        _ => o.is_ge(),
                    },
                },
            }
        }
        Cond::Between(a, lo, hi) => {
            let (Some(x), Some(l), Some(h)) =
                (resolve(item, a)?, resolve(item, lo)?, resolve(item, hi)?)
            else {
                return Ok(false);
            };
            if order(&l, &h).is_some_and(|o| o.is_gt()) {
                return fail(
                    "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound",
                );
            }
            order(&x, &l).is_some_and(|o| o.is_ge()) && order(&x, &h).is_some_and(|o| o.is_le())
        }
        Cond::In(a, list) => {
            let Some(x) = resolve(item, a)? else {
                return Ok(false);
            };
            let mut found = false;
            for o in list {
                if let Some(y) = resolve(item, o)?
                    && values_equal(&x, &y)
                {
                    found = true;
                    break;
                }
            }
            found
        }
        Cond::BeginsWith(a, b) => {
            let (Some(x), Some(y)) = (resolve(item, a)?, resolve(item, b)?) else {
                return Ok(false);
            };
            let ((tx, vx), (ty, vy)) = (type_of(&x), type_of(&y));
            tx == ty
                && (tx == "S" || tx == "B")
                && vx
                    .as_str()
                    .zip(vy.as_str())
                    .is_some_and(|(s, p)| s.starts_with(p))
        }
        Cond::Contains(a, b) => {
            let (Some(x), Some(y)) = (resolve(item, a)?, resolve(item, b)?) else {
                return Ok(false);
            };
            let ((tx, vx), (ty, vy)) = (type_of(&x), type_of(&y));
            match tx {
                "S" | "B" if ty == tx => vx
                    .as_str()
                    .zip(vy.as_str())
                    .is_some_and(|(s, p)| s.contains(p)),
                "SS" | "BS" | "NS" => {
                    let scalar = &tx[1..];
                    ty == scalar
                        && vx.as_array().is_some_and(|a| {
                            a.iter()
                                .any(|e| values_equal(&serde_json::json!({scalar: e}), &y))
                        })
                }
                "L" => vx
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| values_equal(e, &y))),
                _ => false,
            }
        }
    })
}

/// Formats a number the way DynamoDB returns it (no trailing `.0` on whole numbers).
pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn set_operand_value(item: &Map<String, Value>, op: &SetOperand) -> Result<Value, ExprError> {
    match op {
        SetOperand::Operand(o) => resolve(item, o)?.map(std::borrow::Cow::into_owned).ok_or_else(|| {
            ExprError("The provided expression refers to an attribute that does not exist in the item".into())
        }),
        SetOperand::IfNotExists(p, default) => match get_path(item, p) {
            Some(v) => Ok(v.clone()),
            None => set_operand_value(item, default),
        },
        SetOperand::ListAppend(a, b) => {
            let (x, y) = (set_operand_value(item, a)?, set_operand_value(item, b)?);
            match (x.get("L").and_then(Value::as_array), y.get("L").and_then(Value::as_array)) {
                (Some(xa), Some(ya)) => {
                    Ok(serde_json::json!({"L": xa.iter().chain(ya).cloned().collect::<Vec<_>>()}))
                }
                _ => fail("Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append"),
            }
        }
    }
}

fn arith(a: &Value, b: &Value, sign: f64, op: &str) -> Result<Value, ExprError> {
    match (a.get("N").and_then(num), b.get("N").and_then(num)) {
        (Some(x), Some(y)) => Ok(serde_json::json!({"N": format_number(x + sign * y)})),
        _ => fail(format!(
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: {op}"
        )),
    }
}

fn set_path(
    item: &mut Map<String, Value>,
    path: &[PathPart],
    value: Value,
) -> Result<(), ExprError> {
    let invalid = || {
        ExprError(
            "The document path provided in the update expression is invalid for update".into(),
        )
    };
    let (PathPart::Field(first), rest) = path.split_first().ok_or_else(invalid)? else {
        return Err(invalid());
    };
    if rest.is_empty() {
        item.insert(first.clone(), value);
        return Ok(());
    }
    let mut cur = item.get_mut(first).ok_or_else(invalid)?;
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        match part {
            PathPart::Field(f) => {
                let map = cur
                    .get_mut("M")
                    .and_then(Value::as_object_mut)
                    .ok_or_else(invalid)?;
                if last {
                    map.insert(f.clone(), value);
                    return Ok(());
                }
                cur = map.get_mut(f).ok_or_else(invalid)?;
            }
            PathPart::Index(n) => {
                let list = cur
                    .get_mut("L")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(invalid)?;
                if last {
                    if *n < list.len() {
                        list[*n] = value;
                    } else {
                        list.push(value);
                    }
                    return Ok(());
                }
                cur = list.get_mut(*n).ok_or_else(invalid)?;
            }
        }
    }
    Ok(())
}

fn remove_path(item: &mut Map<String, Value>, path: &[PathPart]) {
    let Some((PathPart::Field(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        item.remove(first);
        return;
    }
    let Some(mut cur) = item.get_mut(first) else {
        return;
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let next = match part {
            PathPart::Field(f) => {
                let Some(map) = cur.get_mut("M").and_then(Value::as_object_mut) else {
                    return;
                };
                if last {
                    map.remove(f);
                    return;
                }
                map.get_mut(f)
            }
            PathPart::Index(n) => {
                let Some(list) = cur.get_mut("L").and_then(Value::as_array_mut) else {
                    return;
                };
                if last {
                    if *n < list.len() {
                        list.remove(*n);
                    }
                    return;
                }
                list.get_mut(*n)
            }
        };
        let Some(n) = next else { return };
        cur = n;
    }
}

/// Applies update actions to an item (values are computed from the item before the update, as
/// DynamoDB does). Returns the names of the top-level attributes that changed.
pub fn apply_update(
    item: &mut Map<String, Value>,
    actions: &[Action],
) -> Result<Vec<String>, ExprError> {
    let before = item.clone();
    let mut touched = Vec::new();
    for action in actions {
        let path = match action {
            Action::Set(p, _) | Action::Remove(p) | Action::Add(p, _) | Action::Delete(p, _) => p,
        };
        if let Some(PathPart::Field(f)) = path.first()
            && !touched.contains(f)
        {
            touched.push(f.clone());
        }
        match action {
            Action::Set(p, v) => {
                let value = match v {
                    SetValue::Operand(o) => set_operand_value(&before, o)?,
                    SetValue::Plus(a, b) => arith(
                        &set_operand_value(&before, a)?,
                        &set_operand_value(&before, b)?,
                        1.0,
                        "+",
                    )?,
                    SetValue::Minus(a, b) => arith(
                        &set_operand_value(&before, a)?,
                        &set_operand_value(&before, b)?,
                        -1.0,
                        "-",
                    )?,
                };
                set_path(item, p, value)?;
            }
            Action::Remove(p) => remove_path(item, p),
            Action::Add(p, o) => {
                let add = resolve(&before, o)?
                    .map(std::borrow::Cow::into_owned)
                    .unwrap_or(Value::Null);
                let current = get_path(&before, p).cloned();
                let (ta, va) = type_of(&add);
                let value = match (ta, current) {
                    ("N", None) => add.clone(),
                    ("N", Some(cur)) => arith(&cur, &add, 1.0, "ADD")?,
                    ("SS" | "NS" | "BS", None) => add.clone(),
                    ("SS" | "NS" | "BS", Some(cur)) if type_of(&cur).0 == ta => {
                        let mut members = type_of(&cur).1.as_array().cloned().unwrap_or_default();
                        for m in va.as_array().into_iter().flatten() {
                            if !members.contains(m) {
                                members.push(m.clone());
                            }
                        }
                        serde_json::json!({ta: members})
                    }
                    _ => {
                        return fail(
                            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD",
                        );
                    }
                };
                set_path(item, p, value)?;
            }
            Action::Delete(p, o) => {
                let del = resolve(&before, o)?
                    .map(std::borrow::Cow::into_owned)
                    .unwrap_or(Value::Null);
                let (td, vd) = type_of(&del);
                if !matches!(td, "SS" | "NS" | "BS") {
                    return fail(
                        "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE",
                    );
                }
                if let Some(cur) = get_path(&before, p) {
                    if type_of(cur).0 != td {
                        return fail(
                            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE",
                        );
                    }
                    let remove = vd.as_array().cloned().unwrap_or_default();
                    let left: Vec<Value> = type_of(cur)
                        .1
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|m| !remove.contains(m))
                        .cloned()
                        .collect();
                    if left.is_empty() {
                        remove_path(item, p);
                    } else {
                        set_path(item, p, serde_json::json!({td: left}))?;
                    }
                }
            }
        }
    }
    Ok(touched)
}
