//! Function signatures (`<s-n?:s>`): argument validation, context defaulting and array coercion,
//! following JSONata's regex-based matching of argument type symbols.

use regex::Regex;

use crate::error::Error;
use crate::value::Val;

#[derive(Debug, Clone)]
struct Param {
    /// Regex fragment matching this parameter's symbols.
    regex: String,
    /// Declared type symbol (`a` triggers array coercion).
    kind: char,
    /// Subtype of an array parameter (`a<n>` -> `n`).
    subtype: Option<char>,
    /// `-`: use the context value when the argument is missing.
    context: Option<Regex>,
}

/// A parsed signature.
#[derive(Debug, Clone)]
pub(crate) struct Signature {
    params: Vec<Param>,
    regex: Regex,
}

fn sig_err(pos: usize, msg: &str) -> Error {
    Error::new("S0401", msg, Some(pos))
}

impl Signature {
    pub fn parse(text: &str, pos: usize) -> Result<Signature, Error> {
        let chars: Vec<char> = text.chars().collect();
        if chars.first() != Some(&'<') {
            return Err(sig_err(pos, "Signature must start with <"));
        }
        let mut params: Vec<Param> = Vec::new();
        let mut i = 1;
        while i < chars.len() {
            let c = chars[i];
            match c {
                ':' | '>' => break,
                's' | 'n' | 'b' | 'l' | 'o' => params.push(Param {
                    regex: format!("[{c}m]"),
                    kind: c,
                    subtype: None,
                    context: None,
                }),
                'a' => params.push(Param {
                    regex: "[asnblfom]".into(),
                    kind: 'a',
                    subtype: None,
                    context: None,
                }),
                'f' => params.push(Param {
                    regex: "f".into(),
                    kind: 'f',
                    subtype: None,
                    context: None,
                }),
                'x' => params.push(Param {
                    regex: "[asnblfom]".into(),
                    kind: 'x',
                    subtype: None,
                    context: None,
                }),
                'j' => params.push(Param {
                    regex: "[asnblom]".into(),
                    kind: 'j',
                    subtype: None,
                    context: None,
                }),
                '(' => {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == ')')
                        .ok_or_else(|| sig_err(pos, "Unterminated choice in signature"))?;
                    let choice: String = chars[i + 1..i + end].iter().collect();
                    params.push(Param {
                        regex: format!("[{choice}m]"),
                        kind: '(',
                        subtype: None,
                        context: None,
                    });
                    i += end;
                }
                '<' => {
                    // Subtype of the previous a or f parameter.
                    let mut depth = 0;
                    let start = i;
                    while i < chars.len() {
                        if chars[i] == '<' {
                            depth += 1;
                        } else if chars[i] == '>' {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        i += 1;
                    }
                    if let Some(p) = params.last_mut()
                        && p.kind == 'a'
                    {
                        let sub = chars[start + 1];
                        p.subtype = Some(sub);
                    }
                }
                '?' => {
                    if let Some(p) = params.last_mut() {
                        p.regex.push('?');
                    }
                }
                '+' => {
                    if let Some(p) = params.last_mut() {
                        p.regex.push('+');
                    }
                }
                '-' => {
                    if let Some(p) = params.last_mut() {
                        p.context = Some(
                            Regex::new(&format!("^{}$", p.regex))
                                .map_err(|_| sig_err(pos, "Bad signature"))?,
                        );
                        p.regex.push('?');
                    }
                }
                _ => {
                    return Err(sig_err(
                        pos + i,
                        &format!("Unknown type symbol {c} in signature"),
                    ));
                }
            }
            i += 1;
        }
        let pattern: String = params.iter().map(|p| format!("({})", p.regex)).collect();
        let regex =
            Regex::new(&format!("^{pattern}$")).map_err(|_| sig_err(pos, "Bad signature"))?;
        Ok(Signature { params, regex })
    }

    /// Validates `args` against the signature; returns the arguments to pass.
    pub fn validate<'a>(
        &self,
        args: Vec<Option<Val<'a>>>,
        context: Option<&Val<'a>>,
        name: &str,
        pos: usize,
    ) -> Result<Vec<Option<Val<'a>>>, Error> {
        let supplied: String = args
            .iter()
            .map(|a| a.as_ref().map_or('m', Val::symbol))
            .collect();
        let Some(caps) = self.regex.captures(&supplied) else {
            return Err(self.validation_error(&supplied, name, pos));
        };
        let mut out = Vec::with_capacity(self.params.len());
        let mut args = args.into_iter();
        let mut arg_index = 0;
        for (k, param) in self.params.iter().enumerate() {
            let matched = caps.get(k + 1).map_or("", |m| m.as_str());
            if matched.is_empty() {
                if let Some(ctx_re) = &param.context {
                    let sym = context.map_or('m', Val::symbol);
                    if ctx_re.is_match(&sym.to_string()) {
                        out.push(context.cloned());
                    } else {
                        return Err(Error::new(
                            "T0411",
                            format!(
                                "Context value is not a compatible type with argument {} of function {name}",
                                arg_index + 1
                            ),
                            Some(pos),
                        ));
                    }
                } else {
                    out.push(args.next().flatten());
                    arg_index += 1;
                }
                continue;
            }
            for single in matched.chars() {
                let arg = args.next().flatten();
                arg_index += 1;
                if param.kind == 'a' {
                    let Some(arg) = arg else {
                        out.push(None);
                        continue;
                    };
                    if let Some(sub) = param.subtype {
                        let ok = if single == 'a' {
                            let items = arg.items();
                            items.is_empty() || items.iter().all(|v| v.symbol() == sub)
                        } else {
                            single == sub
                        };
                        if !ok {
                            let ty = match sub {
                                'n' => "numbers",
                                's' => "strings",
                                'b' => "booleans",
                                'o' => "objects",
                                'a' => "arrays",
                                _ => "values",
                            };
                            return Err(Error::new(
                                "T0412",
                                format!(
                                    "Argument {arg_index} of function {name} must be an array of {ty}"
                                ),
                                Some(pos),
                            ));
                        }
                    }
                    if single == 'a' {
                        out.push(Some(arg));
                    } else {
                        out.push(Some(Val::array(vec![arg])));
                    }
                } else {
                    out.push(arg);
                }
            }
        }
        Ok(out)
    }

    fn validation_error(&self, supplied: &str, name: &str, pos: usize) -> Error {
        let mut partial = String::from("^");
        let mut good_to = 0;
        for p in &self.params {
            partial.push_str(&format!("({})", p.regex));
            match Regex::new(&partial).ok().and_then(|re| re.find(supplied)) {
                Some(m) => good_to = m.end(),
                None => break,
            }
        }
        Error::new(
            "T0410",
            format!(
                "Argument {} of function {name} does not match function signature",
                good_to + 1
            ),
            Some(pos),
        )
    }
}
