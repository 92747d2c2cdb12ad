//! Tokeniser and Pratt parser producing the evaluator's syntax tree.
//!
//! The tree is post-processed while parsing, as JSONata's `processAST` does: `a.b.c` becomes one
//! path with steps, predicates on path steps become stages, `a[]` flags the path to keep singleton
//! arrays, and `{...}` after an expression becomes a group-by on it.

use std::sync::Arc;

use regex::Regex;

use crate::error::Error;
use crate::signature::Signature;

/// Maximum nesting of the parse tree, to keep recursion bounded.
const MAX_PARSE_DEPTH: usize = 1000;

/// Stack the parser may use (see `eval::STACK_BUDGET`).
const PARSE_STACK_BUDGET: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    In,
    Concat,
    Range,
    Apply,
    Coalesce,
    Elvis,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::In => "in",
            BinOp::Concat => "&",
            BinOp::Range => "..",
            BinOp::Apply => "~>",
            BinOp::Coalesce => "??",
            BinOp::Elvis => "?:",
        }
    }
}

/// A lambda definition: parameters, optional signature and body.
#[derive(Debug)]
pub(crate) struct LambdaDef {
    pub params: Vec<String>,
    pub signature: Option<Signature>,
    pub body: Node,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Regex(Arc<Regex>),
    Name(String),
    /// `$name`; `""` is the context `$`, `"$"` is the root `$$`.
    Var(String),
    Wildcard,
    Descendant,
    Path {
        steps: Vec<Node>,
        keep_singleton: bool,
    },
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Neg(Box<Node>),
    Not,
    Array(Vec<Node>),
    Object(Vec<(Node, Node)>),
    Block(Vec<Node>),
    Condition {
        cond: Box<Node>,
        then: Box<Node>,
        otherwise: Option<Box<Node>>,
    },
    Bind {
        name: String,
        value: Box<Node>,
    },
    Lambda(Arc<LambdaDef>),
    Call {
        func: Box<Node>,
        args: Vec<Node>,
        partial: bool,
    },
    Placeholder,
    /// Sort step `^(<a, >b)`: expression and descending flag.
    Sort(Vec<(Node, bool)>),
}

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: usize,
    /// Filters applied to each step result (path steps) or to the result (other nodes).
    pub stages: Vec<Node>,
    /// Group-by object constructor applied to the result.
    pub group: Option<Vec<(Node, Node)>>,
    pub keep_array: bool,
    pub cons_array: bool,
}

impl Node {
    fn new(kind: Kind, pos: usize) -> Node {
        Node {
            kind,
            pos,
            stages: Vec::new(),
            group: None,
            keep_array: false,
            cons_array: false,
        }
    }
}

#[derive(Debug, Clone)]
enum Tok {
    Op(&'static str),
    Str(String),
    Num(f64),
    Name(String),
    Var(String),
    Regex(Arc<Regex>),
    End,
}

const OPERATORS: &[(&str, u8)] = &[
    ("..", 20),
    (":=", 10),
    ("!=", 40),
    ("<=", 40),
    (">=", 40),
    ("~>", 40),
    ("??", 40),
    ("?:", 40),
    ("**", 60),
    (".", 75),
    ("[", 80),
    ("]", 0),
    ("{", 70),
    ("}", 0),
    ("(", 80),
    (")", 0),
    (",", 0),
    ("@", 80),
    ("#", 80),
    (";", 0),
    (":", 0),
    ("?", 20),
    ("+", 50),
    ("-", 50),
    ("*", 60),
    ("/", 60),
    ("%", 60),
    ("|", 20),
    ("=", 40),
    ("<", 40),
    (">", 40),
    ("^", 40),
    ("&", 50),
    ("!", 0),
    ("~", 0),
    ("and", 30),
    ("or", 25),
    ("in", 40),
];

fn bp(op: &str) -> u8 {
    OPERATORS
        .iter()
        .find(|(o, _)| *o == op)
        .map(|(_, b)| *b)
        .unwrap_or(0)
}

fn is_op_char(c: char) -> bool {
    ".[]{}(),@#;:?+-*/%|=<>^&!~".contains(c)
}

pub(crate) fn err(code: &str, pos: usize, message: impl Into<String>) -> Error {
    Error {
        code: code.to_string(),
        message: message.into(),
        position: Some(pos),
    }
}

struct Lexer<'s> {
    src: &'s str,
    chars: Vec<(usize, char)>,
    i: usize,
}

impl<'s> Lexer<'s> {
    fn pos(&self) -> usize {
        self.chars
            .get(self.i)
            .map(|c| c.0)
            .unwrap_or(self.src.len())
    }

    fn peek_char(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).map(|c| c.1)
    }

    /// Next token and its start offset; `prefix` means a regex literal may start here.
    fn next(&mut self, prefix: bool) -> Result<(Tok, usize), Error> {
        // Skip whitespace and comments.
        loop {
            match self.peek_char(0) {
                Some(c) if c.is_whitespace() => self.i += 1,
                Some('/') if self.peek_char(1) == Some('*') => {
                    let start = self.pos();
                    self.i += 2;
                    loop {
                        match self.peek_char(0) {
                            None => return Err(err("S0106", start, "Comment has no closing tag")),
                            Some('*') if self.peek_char(1) == Some('/') => {
                                self.i += 2;
                                break;
                            }
                            _ => self.i += 1,
                        }
                    }
                }
                _ => break,
            }
        }
        let start = self.pos();
        let Some(c) = self.peek_char(0) else {
            return Ok((Tok::End, start));
        };
        if prefix && c == '/' {
            return self.regex(start);
        }
        // Two-character operators.
        if let Some(c2) = self.peek_char(1).filter(|_| is_op_char(c)) {
            let two: String = [c, c2].iter().collect();
            if let Some((op, _)) = OPERATORS.iter().find(|(o, _)| o.len() == 2 && *o == two) {
                // `..` must not swallow a number's dot, `?:` only as an operator.
                self.i += 2;
                return Ok((Tok::Op(op), start));
            }
        }
        if is_op_char(c) {
            self.i += 1;
            let op = OPERATORS
                .iter()
                .find(|(o, _)| o.len() == 1 && o.starts_with(c))
                .map(|o| o.0);
            return Ok((Tok::Op(op.unwrap_or("?")), start));
        }
        if c == '"' || c == '\'' {
            return self.string(c, start);
        }
        if c.is_ascii_digit() {
            return self.number(start);
        }
        if c == '`' {
            self.i += 1;
            let from = self.pos();
            while let Some(ch) = self.peek_char(0) {
                if ch == '`' {
                    let name = self.src[from..self.pos()].to_string();
                    self.i += 1;
                    return Ok((Tok::Name(name), start));
                }
                self.i += 1;
            }
            return Err(err(
                "S0105",
                start,
                "Quoted property name must be terminated with a backquote (`)",
            ));
        }
        // Names and variables run until whitespace or an operator character.
        let is_var = c == '$';
        if is_var {
            self.i += 1;
        }
        let from = self.pos();
        while let Some(ch) = self.peek_char(0) {
            if ch.is_whitespace() || is_op_char(ch) || ch == '"' || ch == '\'' {
                break;
            }
            self.i += 1;
        }
        let name = self.src[from..self.pos()].to_string();
        if is_var {
            return Ok((Tok::Var(name), start));
        }
        match name.as_str() {
            "and" => Ok((Tok::Op("and"), start)),
            "or" => Ok((Tok::Op("or"), start)),
            "in" => Ok((Tok::Op("in"), start)),
            _ => Ok((Tok::Name(name), start)),
        }
    }

    fn string(&mut self, quote: char, start: usize) -> Result<(Tok, usize), Error> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek_char(0) else {
                return Err(err(
                    "S0101",
                    start,
                    "String literal must be terminated by a matching quote",
                ));
            };
            self.i += 1;
            if c == quote {
                return Ok((Tok::Str(out), start));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek_char(0) else {
                return Err(err(
                    "S0101",
                    start,
                    "String literal must be terminated by a matching quote",
                ));
            };
            self.i += 1;
            match e {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let mut code = self.hex4()?;
                    if (0xD800..0xDC00).contains(&code)
                        && self.peek_char(0) == Some('\\')
                        && self.peek_char(1) == Some('u')
                    {
                        self.i += 2;
                        let low = self.hex4()?;
                        code =
                            0x10000 + ((code - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                    }
                    out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                }
                other => {
                    return Err(err(
                        "S0103",
                        self.pos() - 1,
                        format!("Unsupported escape sequence: \\{other}"),
                    ));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let at = self.pos();
        let digits: String = (0..4).filter_map(|k| self.peek_char(k)).collect();
        if digits.len() == 4
            && let Ok(v) = u32::from_str_radix(&digits, 16)
        {
            self.i += 4;
            return Ok(v);
        }
        Err(err(
            "S0104",
            at,
            "The escape sequence \\u must be followed by 4 hex digits",
        ))
    }

    fn number(&mut self, start: usize) -> Result<(Tok, usize), Error> {
        let from = self.i;
        while self.peek_char(0).is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.peek_char(0) == Some('.') && self.peek_char(1).is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
            while self.peek_char(0).is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek_char(0), Some('e' | 'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek_char(0), Some('+' | '-')) {
                self.i += 1;
            }
            if self.peek_char(0).is_some_and(|c| c.is_ascii_digit()) {
                while self.peek_char(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            } else {
                self.i = save;
            }
        }
        let text: String = self.chars[from..self.i].iter().map(|c| c.1).collect();
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok((Tok::Num(n), start)),
            _ => Err(err("S0102", start, format!("Number out of range: {text}"))),
        }
    }

    fn regex(&mut self, start: usize) -> Result<(Tok, usize), Error> {
        self.i += 1;
        let from = self.pos();
        let mut depth = 0i32;
        loop {
            let Some(c) = self.peek_char(0) else {
                return Err(err(
                    "S0302",
                    start,
                    "No terminating / in regular expression",
                ));
            };
            if c == '\\' {
                self.i += 2;
                continue;
            }
            if c == '[' {
                depth += 1;
            } else if c == ']' && depth > 0 {
                depth -= 1;
            } else if c == '/' && depth == 0 {
                break;
            }
            self.i += 1;
        }
        let pattern = &self.src[from..self.pos()];
        self.i += 1;
        if pattern.is_empty() {
            return Err(err(
                "S0301",
                start,
                "Empty regular expressions are not allowed",
            ));
        }
        let mut flags = String::new();
        while let Some(c) = self.peek_char(0) {
            if c == 'i' || c == 'm' {
                flags.push(c);
                self.i += 1;
            } else if c.is_ascii_alphabetic() {
                return Err(err(
                    "S0302",
                    self.pos(),
                    format!("Unsupported regular expression flag: {c}"),
                ));
            } else {
                break;
            }
        }
        let mut builder = regex::RegexBuilder::new(pattern);
        builder
            .case_insensitive(flags.contains('i'))
            .multi_line(flags.contains('m'));
        let re = builder.build().map_err(|e| {
            err(
                "S0302",
                start,
                format!("Invalid regular expression /{pattern}/: {e}"),
            )
        })?;
        Ok((Tok::Regex(Arc::new(re)), start))
    }
}

pub(crate) struct Parser<'s> {
    lexer: Lexer<'s>,
    tok: Tok,
    tok_pos: usize,
    depth: usize,
    stack_base: usize,
}

pub(crate) fn parse(src: &str) -> Result<Node, Error> {
    let mut p = Parser {
        lexer: Lexer {
            src,
            chars: src.char_indices().collect(),
            i: 0,
        },
        tok: Tok::End,
        tok_pos: 0,
        depth: 0,
        stack_base: crate::eval::stack_address(),
    };
    p.advance(true)?;
    let node = p.expression(0)?;
    if !matches!(p.tok, Tok::End) {
        return Err(err(
            "S0201",
            p.tok_pos,
            format!("Syntax error: {}", p.tok_text()),
        ));
    }
    Ok(node)
}

impl Parser<'_> {
    fn advance(&mut self, prefix: bool) -> Result<(), Error> {
        let (tok, pos) = self.lexer.next(prefix)?;
        self.tok = tok;
        self.tok_pos = pos;
        Ok(())
    }

    fn tok_text(&self) -> String {
        match &self.tok {
            Tok::Op(o) => (*o).to_string(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Num(n) => n.to_string(),
            Tok::Name(n) => n.clone(),
            Tok::Var(v) => format!("${v}"),
            Tok::Regex(r) => format!("/{}/", r.as_str()),
            Tok::End => "(end)".to_string(),
        }
    }

    fn expect(&mut self, op: &'static str, prefix: bool) -> Result<(), Error> {
        if self.is_op(op) {
            return self.advance(prefix);
        }
        if matches!(self.tok, Tok::End) {
            return Err(err(
                "S0203",
                self.tok_pos,
                format!("Expected \"{op}\" before end of expression"),
            ));
        }
        Err(err(
            "S0202",
            self.tok_pos,
            format!("Expected \"{op}\", got \"{}\"", self.tok_text()),
        ))
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(&self.tok, Tok::Op(o) if *o == op)
    }

    fn left_bp(&self) -> u8 {
        match &self.tok {
            Tok::Op(o) => bp(o),
            _ => 0,
        }
    }

    fn expression(&mut self, rbp: u8) -> Result<Node, Error> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH
            || crate::eval::stack_address().abs_diff(self.stack_base) > PARSE_STACK_BUDGET
        {
            return Err(err(
                "S0208",
                self.tok_pos,
                "Expression is nested too deeply",
            ));
        }
        let mut left = self.nud()?;
        while rbp < self.left_bp() {
            left = self.led(left)?;
        }
        self.depth -= 1;
        Ok(left)
    }

    fn nud(&mut self) -> Result<Node, Error> {
        let pos = self.tok_pos;
        let tok = std::mem::replace(&mut self.tok, Tok::End);
        match tok {
            Tok::End => Err(err("S0207", pos, "Unexpected end of expression")),
            Tok::Str(s) => {
                self.advance(false)?;
                Ok(Node::new(Kind::Str(s), pos))
            }
            Tok::Num(n) => {
                self.advance(false)?;
                Ok(Node::new(Kind::Num(n), pos))
            }
            Tok::Regex(r) => {
                self.advance(false)?;
                Ok(Node::new(Kind::Regex(r), pos))
            }
            Tok::Var(v) => {
                self.advance(false)?;
                Ok(Node::new(Kind::Var(v), pos))
            }
            Tok::Name(n) => {
                if (n == "function" || n == "λ") && self.lexer.peek_after_ws() == Some('(') {
                    self.advance(false)?;
                    return self.lambda(pos);
                }
                self.advance(false)?;
                let kind = match n.as_str() {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "null" => Kind::Null,
                    _ => {
                        return Ok(Node::new(
                            Kind::Path {
                                steps: vec![Node::new(Kind::Name(n), pos)],
                                keep_singleton: false,
                            },
                            pos,
                        ));
                    }
                };
                Ok(Node::new(kind, pos))
            }
            Tok::Op(op) => self.nud_op(op, pos),
        }
    }

    fn nud_op(&mut self, op: &'static str, pos: usize) -> Result<Node, Error> {
        match op {
            "and" | "or" | "in" => {
                self.advance(false)?;
                Ok(Node::new(
                    Kind::Path {
                        steps: vec![Node::new(Kind::Name(op.to_string()), pos)],
                        keep_singleton: false,
                    },
                    pos,
                ))
            }
            "-" => {
                self.advance(true)?;
                let operand = self.expression(70)?;
                if let Kind::Num(n) = operand.kind {
                    return Ok(Node::new(Kind::Num(-n), pos));
                }
                Ok(Node::new(Kind::Neg(Box::new(operand)), pos))
            }
            "*" => {
                self.advance(false)?;
                Ok(Node::new(Kind::Wildcard, pos))
            }
            "**" => {
                self.advance(false)?;
                Ok(Node::new(Kind::Descendant, pos))
            }
            "?" => {
                self.advance(false)?;
                Ok(Node::new(Kind::Placeholder, pos))
            }
            "(" => {
                self.advance(true)?;
                let mut items = Vec::new();
                while !self.is_op(")") {
                    items.push(self.expression(0)?);
                    if !self.is_op(";") {
                        break;
                    }
                    self.advance(true)?;
                }
                self.expect(")", false)?;
                Ok(Node::new(Kind::Block(items), pos))
            }
            "[" => {
                self.advance(true)?;
                let mut items = Vec::new();
                if !self.is_op("]") {
                    loop {
                        let item = self.expression(0)?;
                        items.push(item);
                        if !self.is_op(",") {
                            break;
                        }
                        self.advance(true)?;
                    }
                }
                self.expect("]", false)?;
                Ok(Node::new(Kind::Array(items), pos))
            }
            "{" => {
                self.advance(true)?;
                let pairs = self.object_pairs()?;
                Ok(Node::new(Kind::Object(pairs), pos))
            }
            "|" => Err(err(
                "S0218",
                pos,
                "Transform expressions (| ... | ... |) are not supported by this evaluator",
            )),
            "%" => Err(err("S0217", pos, "The parent operator % is not supported")),
            "!" => {
                self.advance(false)?;
                Ok(Node::new(Kind::Not, pos))
            }
            _ => Err(err(
                "S0211",
                pos,
                format!("The symbol {op} cannot be used as a unary operator"),
            )),
        }
    }

    fn object_pairs(&mut self) -> Result<Vec<(Node, Node)>, Error> {
        let mut pairs = Vec::new();
        if !self.is_op("}") {
            loop {
                let key = self.expression(0)?;
                self.expect(":", true)?;
                let value = self.expression(0)?;
                pairs.push((key, value));
                if !self.is_op(",") {
                    break;
                }
                self.advance(true)?;
            }
        }
        self.expect("}", false)?;
        Ok(pairs)
    }

    fn lambda(&mut self, pos: usize) -> Result<Node, Error> {
        self.expect("(", false)?;
        let mut params = Vec::new();
        while !self.is_op(")") {
            match &self.tok {
                Tok::Var(v) => params.push(v.clone()),
                _ => {
                    return Err(err(
                        "S0208",
                        self.tok_pos,
                        format!(
                            "Parameter {} of function definition must be a variable name (start with $)",
                            self.tok_text()
                        ),
                    ));
                }
            }
            self.advance(false)?;
            if !self.is_op(",") {
                break;
            }
            self.advance(false)?;
        }
        self.expect(")", false)?;
        let mut signature = None;
        if self.is_op("<") {
            let sig_start = self.tok_pos;
            let text = self.lexer.take_signature(sig_start)?;
            signature = Some(Signature::parse(&text, sig_start)?);
            self.advance(false)?;
        }
        self.expect("{", true)?;
        let body = self.expression(0)?;
        self.expect("}", false)?;
        Ok(Node::new(
            Kind::Lambda(Arc::new(LambdaDef {
                params,
                signature,
                body,
            })),
            pos,
        ))
    }

    fn led(&mut self, left: Node) -> Result<Node, Error> {
        let pos = self.tok_pos;
        let Tok::Op(op) = self.tok.clone() else {
            return Err(err(
                "S0201",
                pos,
                format!("Syntax error: {}", self.tok_text()),
            ));
        };
        let lbp = bp(op);
        let binary = |op: BinOp| op;
        let bin = match op {
            "+" => Some(binary(BinOp::Add)),
            "-" => Some(BinOp::Sub),
            "*" => Some(BinOp::Mul),
            "/" => Some(BinOp::Div),
            "%" => Some(BinOp::Mod),
            "=" => Some(BinOp::Eq),
            "!=" => Some(BinOp::Ne),
            "<" => Some(BinOp::Lt),
            "<=" => Some(BinOp::Le),
            ">" => Some(BinOp::Gt),
            ">=" => Some(BinOp::Ge),
            "and" => Some(BinOp::And),
            "or" => Some(BinOp::Or),
            "in" => Some(BinOp::In),
            "&" => Some(BinOp::Concat),
            ".." => Some(BinOp::Range),
            "~>" => Some(BinOp::Apply),
            "??" => Some(BinOp::Coalesce),
            "?:" => Some(BinOp::Elvis),
            _ => None,
        };
        if let Some(bop) = bin {
            self.advance(true)?;
            let rhs = self.expression(lbp)?;
            return Ok(Node::new(
                Kind::Binary {
                    op: bop,
                    lhs: Box::new(left),
                    rhs: Box::new(rhs),
                },
                pos,
            ));
        }
        match op {
            "." => {
                self.advance(false)?;
                let rhs = self.expression(lbp)?;
                make_path(left, rhs, pos)
            }
            "[" => {
                self.advance(true)?;
                if self.is_op("]") {
                    self.advance(false)?;
                    let mut left = left;
                    match &mut left.kind {
                        Kind::Path {
                            steps,
                            keep_singleton,
                        } => {
                            *keep_singleton = true;
                            if let Some(last) = steps.last_mut() {
                                last.keep_array = true;
                            }
                        }
                        _ => left.keep_array = true,
                    }
                    return Ok(left);
                }
                let predicate = self.expression(0)?;
                self.expect("]", false)?;
                let mut left = left;
                let target = match &mut left.kind {
                    Kind::Path { steps, .. } => steps.last_mut().expect("paths have steps"),
                    _ => &mut left,
                };
                if target.group.is_some() {
                    return Err(err(
                        "S0209",
                        pos,
                        "A predicate cannot follow a grouping expression in a step",
                    ));
                }
                target.stages.push(predicate);
                Ok(left)
            }
            "{" => {
                self.advance(true)?;
                let pairs = self.object_pairs()?;
                let mut left = left;
                if left.group.is_some() {
                    return Err(err(
                        "S0210",
                        pos,
                        "Each step can only have one grouping expression",
                    ));
                }
                left.group = Some(pairs);
                Ok(left)
            }
            "(" => {
                self.advance(true)?;
                let mut args = Vec::new();
                let mut partial = false;
                if !self.is_op(")") {
                    loop {
                        let arg = self.expression(0)?;
                        if matches!(arg.kind, Kind::Placeholder) {
                            partial = true;
                        }
                        args.push(arg);
                        if !self.is_op(",") {
                            break;
                        }
                        self.advance(true)?;
                    }
                }
                self.expect(")", false)?;
                Ok(Node::new(
                    Kind::Call {
                        func: Box::new(left),
                        args,
                        partial,
                    },
                    pos,
                ))
            }
            "?" => {
                self.advance(true)?;
                let then = self.expression(0)?;
                let mut otherwise = None;
                if self.is_op(":") {
                    self.advance(true)?;
                    otherwise = Some(Box::new(self.expression(0)?));
                }
                Ok(Node::new(
                    Kind::Condition {
                        cond: Box::new(left),
                        then: Box::new(then),
                        otherwise,
                    },
                    pos,
                ))
            }
            ":=" => {
                let Kind::Var(name) = &left.kind else {
                    return Err(err(
                        "S0212",
                        pos,
                        "The left side of := must be a variable name (start with $)",
                    ));
                };
                let name = name.clone();
                self.advance(true)?;
                let value = self.expression(lbp - 1)?;
                Ok(Node::new(
                    Kind::Bind {
                        name,
                        value: Box::new(value),
                    },
                    pos,
                ))
            }
            "^" => {
                self.advance(false)?;
                self.expect("(", true)?;
                let mut terms = Vec::new();
                loop {
                    let mut descending = false;
                    if self.is_op("<") {
                        self.advance(true)?;
                    } else if self.is_op(">") {
                        descending = true;
                        self.advance(true)?;
                    }
                    terms.push((self.expression(0)?, descending));
                    if !self.is_op(",") {
                        break;
                    }
                    self.advance(true)?;
                }
                self.expect(")", false)?;
                let sort = Node::new(Kind::Sort(terms), pos);
                let mut path = match left.kind {
                    Kind::Path { .. } => left,
                    _ => Node::new(
                        Kind::Path {
                            steps: vec![left],
                            keep_singleton: false,
                        },
                        pos,
                    ),
                };
                if let Kind::Path { steps, .. } = &mut path.kind {
                    steps.push(sort);
                }
                Ok(path)
            }
            "@" | "#" => Err(err(
                "S0216",
                pos,
                format!("The {op} (focus/index binding) operator is not supported"),
            )),
            _ => Err(err("S0201", pos, format!("Syntax error: {op}"))),
        }
    }
}

impl Lexer<'_> {
    /// The next non-whitespace character, without consuming anything.
    fn peek_after_ws(&self) -> Option<char> {
        self.chars[self.i..]
            .iter()
            .map(|c| c.1)
            .find(|c| !c.is_whitespace())
    }

    /// Reads a `<...>` signature whose `<` starts at byte `start` (already consumed as a token).
    fn take_signature(&mut self, start: usize) -> Result<String, Error> {
        let mut depth = 1;
        let mut text = String::from("<");
        while let Some(c) = self.peek_char(0) {
            self.i += 1;
            text.push(c);
            if c == '<' {
                depth += 1;
            } else if c == '>' {
                depth -= 1;
                if depth == 0 {
                    return Ok(text);
                }
            }
        }
        Err(err(
            "S0401",
            start,
            "Function signature is not terminated by >",
        ))
    }
}

fn make_path(left: Node, rhs: Node, pos: usize) -> Result<Node, Error> {
    let (mut steps, mut keep_singleton, group) = match left.kind {
        Kind::Path {
            steps,
            keep_singleton,
        } if left.stages.is_empty() => (steps, keep_singleton, left.group),
        _ => (vec![left], false, None),
    };
    if group.is_some() {
        // A grouped path followed by more steps: keep the group on the last step's result.
        return Err(err(
            "S0210",
            pos,
            "A grouping expression must be the last step of a path",
        ));
    }
    match rhs.kind {
        Kind::Path {
            steps: rest,
            keep_singleton: k,
        } if rhs.stages.is_empty() => {
            keep_singleton |= k;
            steps.extend(rest);
            let mut path = Node::new(
                Kind::Path {
                    steps,
                    keep_singleton,
                },
                pos,
            );
            path.group = rhs.group;
            finish_path(path)
        }
        _ => {
            let mut rhs = rhs;
            let group = rhs.group.take();
            steps.push(rhs);
            let mut path = Node::new(
                Kind::Path {
                    steps,
                    keep_singleton,
                },
                pos,
            );
            path.group = group;
            finish_path(path)
        }
    }
}

fn finish_path(mut path: Node) -> Result<Node, Error> {
    if let Kind::Path {
        steps,
        keep_singleton,
    } = &mut path.kind
    {
        for step in steps.iter_mut() {
            match &step.kind {
                Kind::Num(_) | Kind::Bool(_) | Kind::Null => {
                    return Err(err(
                        "S0213",
                        step.pos,
                        "The literal value cannot be used as a step within a path expression",
                    ));
                }
                Kind::Str(s) => step.kind = Kind::Name(s.clone()),
                _ => {}
            }
            if step.keep_array {
                *keep_singleton = true;
            }
        }
        if let Some(first) = steps.first_mut()
            && matches!(first.kind, Kind::Array(_))
        {
            first.cons_array = true;
        }
        if let Some(last) = steps.last_mut()
            && matches!(last.kind, Kind::Array(_))
        {
            last.cons_array = true;
        }
    }
    Ok(path)
}
