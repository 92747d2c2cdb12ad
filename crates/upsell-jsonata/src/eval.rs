//! The tree-walking evaluator: JSONata's path, sequence and operator semantics.

use std::cell::Cell;
use std::rc::Rc;

use indexmap::IndexMap;

use crate::Env;
use crate::error::Error;
use crate::functions::{self, Builtin};
use crate::parser::{BinOp, Kind, Node};
use crate::value::{Arr, Frame, Func, S, Val, deep_equal, stringify};

pub(crate) type R<'a> = Result<Option<Val<'a>>, Error>;

/// Maximum evaluation nesting (expression depth plus recursive function calls).
pub(crate) const MAX_DEPTH: usize = 10_000;

/// Stack the evaluator may use below the `evaluate` call. Threads get at least 2 MiB (Rust's
/// and tokio's default), so this leaves the caller room.
pub(crate) const STACK_BUDGET: usize = 1024 * 1024;

/// An address on the current stack, to measure how deep the recursion went.
#[inline(never)]
pub(crate) fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Per-evaluation state.
pub(crate) struct Ctx<'a> {
    pub env: &'a Env,
    pub root: Option<Val<'a>>,
    depth: Cell<usize>,
    pub stack_base: usize,
    pub now: Cell<Option<chrono::DateTime<chrono::Utc>>>,
}

pub(crate) fn err(code: &str, pos: usize, message: impl Into<String>) -> Error {
    Error::new(code, message, Some(pos))
}

/// Short rendering of a value for error messages.
pub(crate) fn show(v: &Val<'_>) -> String {
    let s = stringify(v, false);
    if s.chars().count() > 100 {
        let cut: String = s.chars().take(100).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn seq_from(items: Vec<Val<'_>>) -> Val<'_> {
    Val::seq(items)
}

/// Flattens nested arrays fully.
fn flatten_into<'a>(v: &Val<'a>, out: &mut Vec<Val<'a>>) {
    if v.is_array() {
        for item in v.items() {
            flatten_into(&item, out);
        }
    } else {
        out.push(v.clone());
    }
}

/// JSONata's `fn.append` on two possibly undefined values.
pub(crate) fn append<'a>(a: Option<Val<'a>>, b: Option<Val<'a>>) -> Option<Val<'a>> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(a), Some(b)) => {
            let mut items = a.items();
            if b.is_array() {
                items.extend(b.items());
            } else {
                items.push(b);
            }
            Some(Val::array(items))
        }
    }
}

impl<'a> Ctx<'a> {
    pub fn new(env: &'a Env, root: Option<Val<'a>>, stack_base: usize) -> Ctx<'a> {
        Ctx {
            env,
            root,
            depth: Cell::new(0),
            stack_base,
            now: Cell::new(None),
        }
    }

    pub fn enter(&self, pos: usize) -> Result<(), Error> {
        let d = self.depth.get() + 1;
        if d > MAX_DEPTH || stack_address().abs_diff(self.stack_base) > STACK_BUDGET {
            return Err(err(
                Error::STACK_OVERFLOW,
                pos,
                "Stack overflow error: Check for non-terminating recursive function.  Consider rewriting as tail-recursive.",
            ));
        }
        self.depth.set(d);
        Ok(())
    }

    pub fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }

    /// Evaluates `node`, applying its predicates and group (unless it is a path step) and
    /// normalising sequences.
    pub fn eval(&self, node: &'a Node, input: Option<&Val<'a>>, frame: &Rc<Frame<'a>>) -> R<'a> {
        self.eval_as(node, input, frame, false)
    }

    fn eval_as(
        &self,
        node: &'a Node,
        input: Option<&Val<'a>>,
        frame: &Rc<Frame<'a>>,
        as_step: bool,
    ) -> R<'a> {
        self.enter(node.pos)?;
        let result = self.eval_kind(node, input, frame);
        self.leave();
        let mut result = result?;
        let is_path = matches!(node.kind, Kind::Path { .. });
        if !as_step && !is_path {
            for stage in &node.stages {
                result = self.filter(stage, result, frame)?;
            }
            if let Some(group) = &node.group {
                result = self.group(group, result, frame)?;
            }
        }
        Ok(normalise(result, node.keep_array))
    }

    fn eval_kind(&self, node: &'a Node, input: Option<&Val<'a>>, frame: &Rc<Frame<'a>>) -> R<'a> {
        match &node.kind {
            Kind::Str(s) => Ok(Some(Val::Str(S::B(s)))),
            Kind::Num(n) => Ok(Some(Val::Num(*n))),
            Kind::Bool(b) => Ok(Some(Val::Bool(*b))),
            Kind::Null => Ok(Some(Val::Null)),
            Kind::Regex(r) => Ok(Some(Val::Regex(r.clone()))),
            Kind::Name(name) => Ok(input.and_then(|v| lookup(v, name))),
            Kind::Var(name) => Ok(self.var(name, input, frame)),
            Kind::Path {
                steps,
                keep_singleton,
            } => self.path(node, steps, *keep_singleton, input, frame),
            Kind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, node.pos, input, frame),
            Kind::Call {
                func,
                args,
                partial,
            } => self.call(func, args, *partial, None, node.pos, input, frame),
            Kind::Condition {
                cond,
                then,
                otherwise,
            } => self.condition(cond, then, otherwise.as_deref(), input, frame),
            Kind::Block(items) => self.block(items, input, frame),
            _ => self.eval_other(node, input, frame),
        }
    }

    #[inline(never)]
    fn condition(
        &self,
        cond: &'a Node,
        then: &'a Node,
        otherwise: Option<&'a Node>,
        input: Option<&Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> R<'a> {
        if self.eval(cond, input, frame)?.is_some_and(|c| c.truthy()) {
            self.eval(then, input, frame)
        } else if let Some(o) = otherwise {
            self.eval(o, input, frame)
        } else {
            Ok(None)
        }
    }

    #[inline(never)]
    fn block(&self, items: &'a [Node], input: Option<&Val<'a>>, frame: &Rc<Frame<'a>>) -> R<'a> {
        let inner = Frame::child(frame);
        let mut last = None;
        for item in items {
            last = self.eval(item, input, &inner)?;
        }
        Ok(last)
    }

    /// The less frequent node kinds, kept out of `eval_kind` so its stack frame stays small.
    #[inline(never)]
    fn eval_other(&self, node: &'a Node, input: Option<&Val<'a>>, frame: &Rc<Frame<'a>>) -> R<'a> {
        let pos = node.pos;
        Ok(match &node.kind {
            Kind::Wildcard => input.map(wildcard),
            Kind::Descendant => input.map(|v| {
                let mut out = Vec::new();
                descendants(v, &mut out);
                if out.len() == 1 {
                    out.pop().expect("one item")
                } else {
                    seq_from(out)
                }
            }),
            Kind::Neg(operand) => match self.eval(operand, input, frame)? {
                None => None,
                Some(Val::Num(n)) => Some(Val::Num(-n)),
                Some(v) => {
                    return Err(err(
                        "D1002",
                        pos,
                        format!("Cannot negate a non-numeric value: {}", show(&v)),
                    ));
                }
            },
            Kind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(v) = self.eval(item, input, frame)? {
                        if matches!(item.kind, Kind::Array(_)) || !v.is_array() {
                            out.push(v);
                        } else {
                            out.extend(v.items());
                        }
                    }
                }
                Some(Val::Arr(Rc::new(Arr {
                    items: out,
                    cons: node.cons_array,
                    ..Arr::default()
                })))
            }
            Kind::Object(pairs) => self.group(pairs, input.cloned(), frame)?,
            Kind::Bind { name, value } => {
                let v = self.eval(value, input, frame)?;
                match &v {
                    Some(v) => frame.bind(name, v.clone()),
                    None => frame.vars.borrow_mut().retain(|(n, _)| n != name),
                }
                v
            }
            Kind::Lambda(def) => Some(Val::Func(Rc::new(Func::Lambda {
                def,
                frame: frame.clone(),
                input: input.cloned(),
            }))),
            Kind::Not => {
                return Err(err(
                    "S0211",
                    pos,
                    "The symbol ! cannot be used as a unary operator",
                ));
            }
            Kind::Placeholder => {
                return Err(err(
                    "S0211",
                    pos,
                    "The symbol ? cannot be used as a unary operator",
                ));
            }
            Kind::Sort(_) => return Err(err("S0201", pos, "Misplaced sort expression")),
            _ => unreachable!("handled in eval_kind"),
        })
    }

    fn var(&self, name: &str, input: Option<&Val<'a>>, frame: &Rc<Frame<'a>>) -> Option<Val<'a>> {
        match name {
            "" => match input {
                Some(Val::Arr(a)) if a.outer => a.items.first().cloned(),
                other => other.cloned(),
            },
            "$" => self.root.clone(),
            _ => frame
                .lookup(name)
                .or_else(|| self.env.vars.get(name).map(Val::from_json))
                .or_else(|| {
                    functions::lookup(name, self.env.step_functions)
                        .map(|b| Val::Func(Rc::new(Func::Builtin(b))))
                }),
        }
    }

    fn path(
        &self,
        node: &'a Node,
        steps: &'a [Node],
        keep_singleton: bool,
        input: Option<&Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> R<'a> {
        let first = &steps[0];
        let mut inputs: Vec<Option<Val<'a>>> = match input {
            Some(v) if v.is_array() && !matches!(first.kind, Kind::Var(_)) => {
                v.items().into_iter().map(Some).collect()
            }
            other => vec![other.cloned()],
        };
        let mut result: Option<Val<'a>> = None;
        for (i, step) in steps.iter().enumerate() {
            let last = i + 1 == steps.len();
            let r = if i == 0 && step.cons_array {
                let mut r = self.eval_as(step, input, frame, true)?;
                for stage in &step.stages {
                    r = self.filter(stage, r, frame)?;
                }
                r.unwrap_or_else(|| seq_from(Vec::new()))
            } else if let Kind::Sort(terms) = &step.kind {
                let items: Vec<Val<'a>> = inputs.iter().flatten().cloned().collect();
                let sorted = self.sort(terms, items, frame)?;
                let mut r = Some(seq_from(sorted));
                for stage in &step.stages {
                    r = self.filter(stage, r, frame)?;
                }
                r.unwrap_or_else(|| seq_from(Vec::new()))
            } else {
                self.step(step, &inputs, last, frame)?
            };
            let empty = r.len() == 0 && r.is_array();
            result = Some(r);
            if empty {
                break;
            }
            if !last {
                let r = result.as_ref().expect("just set");
                inputs = if r.is_array() {
                    r.items().into_iter().map(Some).collect()
                } else {
                    vec![Some(r.clone())]
                };
            }
        }
        let mut result = result.unwrap_or_else(|| seq_from(Vec::new()));
        if keep_singleton {
            result = match result {
                Val::Arr(a) if a.cons && !a.seq => Val::Arr(Rc::new(Arr {
                    items: vec![Val::Arr(a)],
                    seq: true,
                    keep: true,
                    ..Arr::default()
                })),
                Val::Arr(mut a) if a.seq => {
                    Rc::make_mut(&mut a).keep = true;
                    Val::Arr(a)
                }
                other => other,
            };
        }
        let mut result = Some(result);
        if let Some(group) = &node.group {
            result = self.group(group, result, frame)?;
        }
        Ok(result)
    }

    fn step(
        &self,
        step: &'a Node,
        inputs: &[Option<Val<'a>>],
        last: bool,
        frame: &Rc<Frame<'a>>,
    ) -> Result<Val<'a>, Error> {
        let mut results: Vec<Val<'a>> = Vec::with_capacity(inputs.len());
        for item in inputs {
            let mut r = self.eval_as(step, item.as_ref(), frame, true)?;
            for stage in &step.stages {
                r = self.filter(stage, r, frame)?;
            }
            if let Some(r) = r {
                results.push(r);
            }
        }
        if last && results.len() == 1 && results[0].is_array() && !results[0].is_seq() {
            return Ok(results.pop().expect("one result"));
        }
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            match &r {
                Val::Arr(a) if !a.cons => out.extend(a.items.iter().cloned()),
                Val::JArr(a) => out.extend(a.iter().map(Val::from_json)),
                _ => out.push(r),
            }
        }
        Ok(seq_from(out))
    }

    /// A predicate `[expr]` applied to a value (or each member of a sequence/array).
    fn filter(&self, pred: &'a Node, input: Option<Val<'a>>, frame: &Rc<Frame<'a>>) -> R<'a> {
        let Some(input) = input else {
            return Ok(Some(seq_from(Vec::new())));
        };
        let items = input.items();
        if let Kind::Num(n) = pred.kind
            && pred.stages.is_empty()
        {
            let mut idx = n.floor();
            if idx < 0.0 {
                idx += items.len() as f64;
            }
            let mut out = Vec::new();
            if idx >= 0.0
                && let Some(item) = items.get(idx as usize)
            {
                if item.is_array() {
                    return Ok(Some(item.clone()));
                }
                out.push(item.clone());
            }
            return Ok(Some(seq_from(out)));
        }
        let mut out = Vec::new();
        let n = items.len() as f64;
        for (index, item) in items.iter().enumerate() {
            let res = self.eval(pred, Some(item), frame)?;
            let Some(res) = res else { continue };
            let keep = match &res {
                Val::Num(_) => index_matches(&res, index, n),
                v if v.is_array()
                    && !v.items().is_empty()
                    && v.items().iter().all(|x| matches!(x, Val::Num(_))) =>
                {
                    v.items().iter().any(|x| index_matches(x, index, n))
                }
                v => v.truthy(),
            };
            if keep {
                out.push(item.clone());
            }
        }
        Ok(Some(seq_from(out)))
    }

    /// The group-by / object constructor.
    pub fn group(
        &self,
        pairs: &'a [(Node, Node)],
        input: Option<Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> R<'a> {
        let items: Vec<Option<Val<'a>>> = match &input {
            Some(v) if v.is_array() => {
                let items = v.items();
                if items.is_empty() {
                    vec![None]
                } else {
                    items.into_iter().map(Some).collect()
                }
            }
            other => vec![other.clone()],
        };
        let mut groups: IndexMap<String, (Option<Val<'a>>, usize)> = IndexMap::new();
        for item in &items {
            for (pi, (key_node, _)) in pairs.iter().enumerate() {
                let key = self.eval(key_node, item.as_ref(), frame)?;
                let key = match key {
                    None => continue,
                    Some(Val::Str(s)) => s.to_string(),
                    Some(other) => {
                        return Err(err(
                            "T1003",
                            key_node.pos,
                            format!(
                                "Key in object structure must evaluate to a string; got: {}",
                                show(&other)
                            ),
                        ));
                    }
                };
                match groups.get_mut(&key) {
                    Some(entry) => {
                        if entry.1 != pi {
                            return Err(err(
                                "D1009",
                                key_node.pos,
                                format!("Multiple key definitions evaluate to same key: \"{key}\""),
                            ));
                        }
                        entry.0 = append(entry.0.take(), item.clone());
                    }
                    None => {
                        groups.insert(key, (item.clone(), pi));
                    }
                }
            }
        }
        let mut out = IndexMap::with_capacity(groups.len());
        for (key, (data, pi)) in groups {
            if let Some(v) = self.eval(&pairs[pi].1, data.as_ref(), frame)? {
                out.insert(key, v);
            }
        }
        Ok(Some(Val::Obj(Rc::new(out))))
    }

    fn sort(
        &self,
        terms: &'a [(Node, bool)],
        items: Vec<Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> Result<Vec<Val<'a>>, Error> {
        if items.len() <= 1 {
            return Ok(items);
        }
        // Precompute sort keys, then a stable sort.
        let mut keyed: Vec<(Vec<Option<Val<'a>>>, Val<'a>)> = Vec::with_capacity(items.len());
        for item in items {
            let mut keys = Vec::with_capacity(terms.len());
            for (term, _) in terms {
                let k = self.eval(term, Some(&item), frame)?;
                if let Some(k) = &k
                    && !matches!(k, Val::Num(_) | Val::Str(_))
                {
                    return Err(err(
                        "T2008",
                        term.pos,
                        "The expressions within an order-by clause must evaluate to numeric or string values",
                    ));
                }
                keys.push(k);
            }
            keyed.push((keys, item));
        }
        // Type consistency per term.
        for (t, (term, _)) in terms.iter().enumerate() {
            let mut kind = None;
            for (keys, _) in &keyed {
                if let Some(k) = &keys[t] {
                    let sym = k.symbol();
                    if kind.is_some_and(|s| s != sym) {
                        return Err(err(
                            "T2007",
                            term.pos,
                            "Type mismatch when comparing values in order-by clause",
                        ));
                    }
                    kind = Some(sym);
                }
            }
        }
        keyed.sort_by(|(a, _), (b, _)| {
            for (t, (_, desc)) in terms.iter().enumerate() {
                let ord = match (&a[t], &b[t]) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (Some(x), Some(y)) => {
                        let o = compare_values(x, y);
                        if *desc { o.reverse() } else { o }
                    }
                };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
        Ok(keyed.into_iter().map(|(_, v)| v).collect())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        func: &'a Node,
        arg_nodes: &'a [Node],
        partial: bool,
        first_arg: Option<Option<Val<'a>>>,
        pos: usize,
        input: Option<&Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> R<'a> {
        let mut args: Vec<Option<Val<'a>>> = Vec::with_capacity(arg_nodes.len() + 1);
        if let Some(first) = first_arg {
            args.push(first);
        }
        // Fast path: a builtin called by name, not shadowed by a variable.
        let name = match &func.kind {
            Kind::Var(n) => n.as_str(),
            Kind::Path { steps, .. } if steps.len() == 1 => match &steps[0].kind {
                Kind::Name(n) => n.as_str(),
                _ => "",
            },
            _ => "",
        };
        let callee = if let Kind::Var(n) = &func.kind
            && frame.lookup(n).is_none()
            && !self.env.vars.contains_key(n.as_str())
            && func.stages.is_empty()
            && let Some(b) = functions::lookup(n, self.env.step_functions)
        {
            Callee::Builtin(b)
        } else {
            match self.eval(func, input, frame)? {
                Some(v) if v.is_func() => Callee::Val(v),
                _ => {
                    let code = if partial { "T1007" } else { "T1005" };
                    let code = if matches!(func.kind, Kind::Path { .. }) {
                        code
                    } else if partial {
                        "T1008"
                    } else {
                        "T1006"
                    };
                    let msg = if code == "T1005" || code == "T1007" {
                        format!(
                            "Attempted to {} a non-function. Did you mean ${name}?",
                            if partial { "partially apply" } else { "invoke" }
                        )
                    } else {
                        format!(
                            "Attempted to {} a non-function",
                            if partial { "partially apply" } else { "invoke" }
                        )
                    };
                    return Err(err(code, pos, msg));
                }
            }
        };
        for a in arg_nodes {
            if matches!(a.kind, Kind::Placeholder) {
                args.push(None);
                continue;
            }
            args.push(self.eval(a, input, frame)?);
        }
        let fval = match callee {
            Callee::Builtin(b) if !partial => return self.call_builtin(b, args, input, pos),
            Callee::Builtin(b) => Val::Func(Rc::new(Func::Builtin(b))),
            Callee::Val(v) => v,
        };
        if partial {
            let mut slots = Vec::with_capacity(args.len());
            let offset = args.len() - arg_nodes.len();
            for (ai, a) in arg_nodes.iter().enumerate() {
                if matches!(a.kind, Kind::Placeholder) {
                    slots.push(None);
                } else {
                    slots.push(Some(args[ai + offset].clone().unwrap_or(Val::Null)));
                }
            }
            return Ok(Some(Val::Func(Rc::new(Func::Partial {
                func: fval,
                args: slots,
            }))));
        }
        self.apply(&fval, args, input, pos)
    }

    pub fn call_builtin(
        &self,
        b: &'static Builtin,
        args: Vec<Option<Val<'a>>>,
        input: Option<&Val<'a>>,
        pos: usize,
    ) -> R<'a> {
        let args = b.signature().validate(args, input, b.name, pos)?;
        (b.f)(self, args, pos)
    }

    /// Applies a function value to arguments.
    pub fn apply(
        &self,
        f: &Val<'a>,
        args: Vec<Option<Val<'a>>>,
        input: Option<&Val<'a>>,
        pos: usize,
    ) -> R<'a> {
        self.enter(pos)?;
        let r = self.apply_inner(f, args, input, pos);
        self.leave();
        r
    }

    fn apply_inner(
        &self,
        f: &Val<'a>,
        args: Vec<Option<Val<'a>>>,
        input: Option<&Val<'a>>,
        pos: usize,
    ) -> R<'a> {
        match f {
            Val::Regex(re) => {
                let Some(Some(Val::Str(s))) = args.first() else {
                    return Ok(None);
                };
                Ok(functions::regex_first_match(re, s))
            }
            Val::Func(func) => match &**func {
                Func::Builtin(b) => self.call_builtin(b, args, input, pos),
                Func::Lambda {
                    def,
                    frame,
                    input: def_input,
                } => {
                    let args = match &def.signature {
                        Some(sig) => sig.validate(args, input, "lambda", pos)?,
                        None => args,
                    };
                    let inner = Frame::child(frame);
                    {
                        let mut vars = inner.vars.borrow_mut();
                        for (i, p) in def.params.iter().enumerate() {
                            if let Some(Some(v)) = args.get(i) {
                                vars.push((p.as_str(), v.clone()));
                            }
                        }
                    }
                    self.eval(&def.body, def_input.as_ref(), &inner)
                }
                Func::Partial { func, args: slots } => {
                    let mut supplied = args.into_iter();
                    let full: Vec<Option<Val<'a>>> = slots
                        .iter()
                        .map(|s| match s {
                            Some(v) => Some(v.clone()),
                            None => supplied.next().flatten(),
                        })
                        .collect();
                    self.apply(func, full, input, pos)
                }
                Func::Chain(first, second) => {
                    let mid = self.apply(first, args, input, pos)?;
                    self.apply(second, vec![mid], input, pos)
                }
            },
            _ => Err(err("T1006", pos, "Attempted to invoke a non-function")),
        }
    }

    fn binary(
        &self,
        op: BinOp,
        lhs: &'a Node,
        rhs: &'a Node,
        pos: usize,
        input: Option<&Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> R<'a> {
        match op {
            BinOp::And => {
                let l = self.eval(lhs, input, frame)?.is_some_and(|v| v.truthy());
                if !l {
                    return Ok(Some(Val::Bool(false)));
                }
                let r = self.eval(rhs, input, frame)?.is_some_and(|v| v.truthy());
                return Ok(Some(Val::Bool(r)));
            }
            BinOp::Or => {
                let l = self.eval(lhs, input, frame)?.is_some_and(|v| v.truthy());
                if l {
                    return Ok(Some(Val::Bool(true)));
                }
                let r = self.eval(rhs, input, frame)?.is_some_and(|v| v.truthy());
                return Ok(Some(Val::Bool(r)));
            }
            BinOp::Coalesce => {
                return match self.eval(lhs, input, frame)? {
                    Some(v) => Ok(Some(v)),
                    None => self.eval(rhs, input, frame),
                };
            }
            BinOp::Elvis => {
                return match self.eval(lhs, input, frame)? {
                    Some(v) if v.truthy() => Ok(Some(v)),
                    _ => self.eval(rhs, input, frame),
                };
            }
            BinOp::Apply => return self.apply_op(lhs, rhs, pos, input, frame),
            _ => {}
        }
        let l = self.eval(lhs, input, frame)?;
        let r = self.eval(rhs, input, frame)?;
        self.binary_values(op, l, r, lhs, rhs, pos)
    }

    #[inline(never)]
    fn binary_values(
        &self,
        op: BinOp,
        l: Option<Val<'a>>,
        r: Option<Val<'a>>,
        lhs: &'a Node,
        rhs: &'a Node,
        pos: usize,
    ) -> R<'a> {
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let ln = match &l {
                    None => None,
                    Some(Val::Num(n)) => Some(*n),
                    Some(_) => {
                        return Err(err(
                            "T2001",
                            lhs.pos,
                            format!(
                                "The left side of the {} operator must evaluate to a number",
                                op.symbol()
                            ),
                        ));
                    }
                };
                let rn = match &r {
                    None => None,
                    Some(Val::Num(n)) => Some(*n),
                    Some(_) => {
                        return Err(err(
                            "T2002",
                            rhs.pos,
                            format!(
                                "The right side of the {} operator must evaluate to a number",
                                op.symbol()
                            ),
                        ));
                    }
                };
                let (Some(a), Some(b)) = (ln, rn) else {
                    return Ok(None);
                };
                let v = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                };
                if !v.is_finite() {
                    return Err(err(
                        "D1001",
                        pos,
                        format!("Number out of range: {}", crate::value::js_number(v)),
                    ));
                }
                Ok(Some(Val::Num(v)))
            }
            BinOp::Eq | BinOp::Ne => {
                let (Some(a), Some(b)) = (&l, &r) else {
                    return Ok(Some(Val::Bool(false)));
                };
                let eq = deep_equal(a, b);
                Ok(Some(Val::Bool(if op == BinOp::Eq { eq } else { !eq })))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let comparable =
                    |v: &Option<Val<'a>>| matches!(v, None | Some(Val::Num(_)) | Some(Val::Str(_)));
                if !comparable(&l) || !comparable(&r) {
                    let bad = if !comparable(&l) { &l } else { &r };
                    return Err(err(
                        "T2010",
                        pos,
                        format!(
                            "The expressions either side of operator \"{}\" must evaluate to numeric or string values (got {})",
                            op.symbol(),
                            bad.as_ref().map(show).unwrap_or_default()
                        ),
                    ));
                }
                let (Some(a), Some(b)) = (&l, &r) else {
                    return Ok(None);
                };
                let ord = match (a, b) {
                    (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
                    (Val::Str(x), Val::Str(y)) => Some((**x).cmp(&**y)),
                    _ => {
                        return Err(err(
                            "T2009",
                            pos,
                            format!(
                                "The values {} and {} either side of operator \"{}\" must be of the same data type",
                                show(a),
                                show(b),
                                op.symbol()
                            ),
                        ));
                    }
                };
                let Some(ord) = ord else {
                    return Ok(Some(Val::Bool(false)));
                };
                use std::cmp::Ordering::*;
                let v = match op {
                    BinOp::Lt => ord == Less,
                    BinOp::Le => ord != Greater,
                    BinOp::Gt => ord == Greater,
                    _ => ord != Less,
                };
                Ok(Some(Val::Bool(v)))
            }
            BinOp::Concat => {
                let s = |v: &Option<Val<'a>>| -> Result<String, Error> {
                    match v {
                        None => Ok(String::new()),
                        Some(Val::Str(s)) => Ok(s.to_string()),
                        Some(v) => functions::to_string(v, pos),
                    }
                };
                let mut out = s(&l)?;
                out.push_str(&s(&r)?);
                Ok(Some(Val::string(out)))
            }
            BinOp::In => {
                let (Some(a), Some(b)) = (&l, &r) else {
                    return Ok(Some(Val::Bool(false)));
                };
                let found = if b.is_array() {
                    b.items().iter().any(|x| deep_equal(a, x))
                } else {
                    deep_equal(a, b)
                };
                Ok(Some(Val::Bool(found)))
            }
            BinOp::Range => {
                let int = |v: &Option<Val<'a>>,
                           code: &str,
                           side: &str|
                 -> Result<Option<i64>, Error> {
                    match v {
                        None => Ok(None),
                        Some(Val::Num(n)) if n.fract() == 0.0 => Ok(Some(*n as i64)),
                        Some(_) => Err(err(
                            code,
                            pos,
                            format!(
                                "The {side} side of the range operator (..) must evaluate to an integer"
                            ),
                        )),
                    }
                };
                let a = int(&l, "T2003", "left")?;
                let b = int(&r, "T2004", "right")?;
                let (Some(a), Some(b)) = (a, b) else {
                    return Ok(None);
                };
                if a > b {
                    return Ok(Some(Val::array(Vec::new())));
                }
                let size = b - a + 1;
                if size > 10_000_000 {
                    return Err(err(
                        "D2014",
                        pos,
                        format!(
                            "The size of the sequence allocated by the range operator (..) must not exceed 1e7.  Attempted to allocate {size}."
                        ),
                    ));
                }
                Ok(Some(Val::array(
                    (a..=b).map(|i| Val::Num(i as f64)).collect(),
                )))
            }
            _ => unreachable!("handled above"),
        }
    }

    fn apply_op(
        &self,
        lhs: &'a Node,
        rhs: &'a Node,
        pos: usize,
        input: Option<&Val<'a>>,
        frame: &Rc<Frame<'a>>,
    ) -> R<'a> {
        let l = self.eval(lhs, input, frame)?;
        if let Kind::Call {
            func,
            args,
            partial,
        } = &rhs.kind
        {
            return self.call(func, args, *partial, Some(l), rhs.pos, input, frame);
        }
        let f = self.eval(rhs, input, frame)?;
        let Some(f) = f.filter(Val::is_func) else {
            return Err(err(
                "T2006",
                rhs.pos,
                "The right side of the function application operator ~> must be a function",
            ));
        };
        match l {
            Some(l) if l.is_func() => Ok(Some(Val::Func(Rc::new(Func::Chain(l, f))))),
            l => self.apply(&f, vec![l], input, pos),
        }
    }
}

enum Callee<'a> {
    Builtin(&'static Builtin),
    Val(Val<'a>),
}

fn index_matches(v: &Val<'_>, index: usize, len: f64) -> bool {
    let Val::Num(n) = v else { return false };
    let mut i = n.floor();
    if i < 0.0 {
        i += len;
    }
    i == index as f64
}

/// Orders two numbers or two strings (callers ensure matching types).
pub(crate) fn compare_values(a: &Val<'_>, b: &Val<'_>) -> std::cmp::Ordering {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal),
        (Val::Str(x), Val::Str(y)) => (**x).cmp(&**y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// Collapses sequences: empty is undefined, a singleton is its item unless kept.
fn normalise(result: Option<Val<'_>>, keep_array: bool) -> Option<Val<'_>> {
    match result {
        Some(Val::Arr(mut a)) if a.seq => {
            if keep_array && !a.keep {
                Rc::make_mut(&mut a).keep = true;
            }
            match a.items.len() {
                0 => None,
                1 if !a.keep => Some(a.items[0].clone()),
                _ => Some(Val::Arr(a)),
            }
        }
        other => other,
    }
}

/// Field lookup, mapping over arrays and flattening one level.
fn lookup<'a>(v: &Val<'a>, key: &str) -> Option<Val<'a>> {
    match v {
        Val::JObj(o) => o.get(key).map(Val::from_json),
        Val::Obj(o) => o.get(key).cloned(),
        Val::JArr(a) => {
            let mut out = Vec::new();
            for item in a.iter() {
                if let Some(r) = lookup(&Val::from_json(item), key) {
                    push_flat(&mut out, r);
                }
            }
            Some(seq_from(out))
        }
        Val::Arr(a) => {
            let mut out = Vec::new();
            for item in &a.items {
                if let Some(r) = lookup(item, key) {
                    push_flat(&mut out, r);
                }
            }
            Some(seq_from(out))
        }
        _ => None,
    }
}

fn push_flat<'a>(out: &mut Vec<Val<'a>>, v: Val<'a>) {
    if v.is_array() {
        out.extend(v.items());
    } else {
        out.push(v);
    }
}

fn wildcard<'a>(v: &Val<'a>) -> Val<'a> {
    let v = match v {
        Val::Arr(a) if a.outer && !a.items.is_empty() => a.items[0].clone(),
        other => other.clone(),
    };
    let mut out = Vec::new();
    for (_, value) in v.entries() {
        if value.is_array() {
            flatten_into(&value, &mut out);
        } else {
            out.push(value);
        }
    }
    seq_from(out)
}

fn descendants<'a>(v: &Val<'a>, out: &mut Vec<Val<'a>>) {
    if v.is_array() {
        for item in v.items() {
            descendants(&item, out);
        }
        return;
    }
    out.push(v.clone());
    for (_, value) in v.entries() {
        descendants(&value, out);
    }
}
