//! `meta` expressions: parsing (Perl operator precedence), canonical text, and evaluation over rule values.
//!
//! A rule name evaluates to its hit count (1 for ordinary rules, the match count for
//! `tflags multiple`), 0 when it did not hit or is unknown. `&&` and `||` return one of
//! their operands as Perl does; comparisons and `!` return 1 or 0.

use std::fmt;

/// Why a `meta` expression was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaError {
    /// The expression is malformed.
    Syntax(String),
    /// Valid SpamAssassin syntax the engine does not evaluate (functions, `?:`).
    Unsupported(String),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `^`: Perl's bitwise XOR of the operands as integers (SpamAssassin's "boolean XOR")
    Xor,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinOp {
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            // Perl's `|` and `^` bind tighter than `&&` and looser than `==`.
            BinOp::Xor => 3,
            BinOp::Eq | BinOp::Ne => 4,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 5,
            BinOp::Add | BinOp::Sub => 6,
            BinOp::Mul | BinOp::Div => 7,
        }
    }

    /// `==`, `!=`, `<`, `<=`, `>`, `>=`: the operators Perl chains.
    fn compares(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Xor => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    /// `a op b`, `b` evaluated only when Perl would. NaN stands for an evaluation that
    /// died (a division by zero): it is the result of anything that reads it, so the meta
    /// does not fire, as SpamAssassin's does not when Perl dies in it (review: the quotient
    /// read as 0, and `(__A / __Z) < 1` fired when `__Z` did not hit).
    fn apply(self, a: f64, b: impl FnOnce() -> f64) -> f64 {
        if a.is_nan() {
            return a;
        }
        match self {
            BinOp::Or if a != 0.0 => a,
            BinOp::And if a == 0.0 => a,
            _ => {
                let b = b();
                if b.is_nan() {
                    b
                } else {
                    self.of_values(a, b)
                }
            }
        }
    }

    /// `a op b` of two values.
    fn of_values(self, a: f64, b: f64) -> f64 {
        let t = |x: bool| if x { 1.0 } else { 0.0 };
        match self {
            BinOp::Or => {
                if a != 0.0 {
                    a
                } else {
                    b
                }
            }
            BinOp::And => {
                if a == 0.0 {
                    a
                } else {
                    b
                }
            }
            // Perl takes the operands as unsigned integers: fractions truncated, a
            // negative one in two's complement.
            BinOp::Xor => ((a as i64 as u64) ^ (b as i64 as u64)) as f64,
            BinOp::Eq => t(a == b),
            BinOp::Ne => t(a != b),
            BinOp::Lt => t(a < b),
            BinOp::Le => t(a <= b),
            BinOp::Gt => t(a > b),
            BinOp::Ge => t(a >= b),
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div if b == 0.0 => f64::NAN,
            BinOp::Div => a / b,
        }
    }
}

/// An expression tree whose leaves refer to rules by `R` (a name, or a slot once compiled).
#[derive(Debug, Clone, PartialEq)]
pub enum Node<R> {
    /// A number literal.
    Num(f64),
    /// A rule or symbol reference.
    Ref(R),
    /// `!x`
    Not(Box<Node<R>>),
    /// `-x`
    Neg(Box<Node<R>>),
    /// `a OP b`
    Bin(BinOp, Box<Node<R>>, Box<Node<R>>),
}

impl<R> Node<R> {
    /// Evaluates with `value` giving each reference's value.
    pub fn eval(&self, value: &impl Fn(&R) -> f64) -> f64 {
        match self {
            Node::Num(n) => *n,
            Node::Ref(r) => value(r),
            Node::Not(x) => match x.eval(value) {
                v if v.is_nan() => v,
                0.0 => 1.0,
                _ => 0.0,
            },
            Node::Neg(x) => -x.eval(value),
            Node::Bin(op, a, b) => op.apply(a.eval(value), || b.eval(value)),
        }
    }

    /// Replaces every reference through `f`.
    pub fn map_refs<S>(&self, f: &mut impl FnMut(&R) -> S) -> Node<S> {
        match self {
            Node::Num(n) => Node::Num(*n),
            Node::Ref(r) => Node::Ref(f(r)),
            Node::Not(x) => Node::Not(Box::new(x.map_refs(f))),
            Node::Neg(x) => Node::Neg(Box::new(x.map_refs(f))),
            Node::Bin(op, a, b) => Node::Bin(*op, Box::new(a.map_refs(f)), Box::new(b.map_refs(f))),
        }
    }

    /// Calls `f` on every reference.
    pub fn for_each_ref(&self, f: &mut impl FnMut(&R)) {
        match self {
            Node::Num(_) => {}
            Node::Ref(r) => f(r),
            Node::Not(x) | Node::Neg(x) => x.for_each_ref(f),
            Node::Bin(_, a, b) => {
                a.for_each_ref(f);
                b.for_each_ref(f);
            }
        }
    }
}

/// A parsed `meta` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaExpr {
    /// The tree, with rule names as references.
    pub tree: Node<String>,
}

impl MetaExpr {
    /// Parses a SpamAssassin `meta` expression.
    pub fn parse(text: &str) -> Result<MetaExpr, MetaError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(MetaError::Syntax("empty meta expression".into()));
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            copied: 0,
        };
        let tree = p.expr(0)?;
        if p.pos != p.tokens.len() {
            return Err(MetaError::Syntax(format!(
                "unexpected {} in meta expression",
                p.tokens[p.pos]
            )));
        }
        Ok(MetaExpr { tree })
    }

    /// The rule names the expression refers to, sorted and deduplicated.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.tree
            .for_each_ref(&mut |n: &String| names.push(n.clone()));
        names.sort();
        names.dedup();
        names
    }
}

impl fmt::Display for MetaExpr {
    /// A canonical, fully parenthesised form (independent of the source's whitespace).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(node: &Node<String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match node {
                Node::Num(n) => write!(f, "{n}"),
                Node::Ref(r) => f.write_str(r),
                Node::Not(x) => {
                    f.write_str("!")?;
                    write(x, f)
                }
                Node::Neg(x) => {
                    f.write_str("-")?;
                    write(x, f)
                }
                Node::Bin(op, a, b) => {
                    f.write_str("(")?;
                    write(a, f)?;
                    write!(f, " {} ", op.as_str())?;
                    write(b, f)?;
                    f.write_str(")")
                }
            }
        }
        write(&self.tree, f)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(BinOp),
    Not,
    LParen,
    RParen,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(n) => write!(f, "`{n}`"),
            Tok::Name(n) => write!(f, "`{n}`"),
            Tok::Op(op) => write!(f, "`{}`", op.as_str()),
            Tok::Not => f.write_str("`!`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, MetaError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let two = |op| (Tok::Op(op), 2);
        let one = |op| (Tok::Op(op), 1);
        let (tok, len) = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'|' if next == Some(b'|') => two(BinOp::Or),
            b'&' if next == Some(b'&') => two(BinOp::And),
            b'^' => one(BinOp::Xor),
            b'=' if next == Some(b'=') => two(BinOp::Eq),
            b'!' if next == Some(b'=') => two(BinOp::Ne),
            b'!' => (Tok::Not, 1),
            b'<' if next == Some(b'=') => two(BinOp::Le),
            b'>' if next == Some(b'=') => two(BinOp::Ge),
            b'<' => one(BinOp::Lt),
            b'>' => one(BinOp::Gt),
            b'+' => one(BinOp::Add),
            b'-' => one(BinOp::Sub),
            b'*' => one(BinOp::Mul),
            b'/' => one(BinOp::Div),
            b'?' | b':' => {
                return Err(MetaError::Unsupported(
                    "the `?:` operator is not supported in meta rules".into(),
                ))
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let start = i;
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                    j += 1;
                }
                let s = &text[start..j];
                let n: f64 = s
                    .parse()
                    .map_err(|_| MetaError::Syntax(format!("bad number `{s}`")))?;
                (Tok::Num(n), j - start)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = &text[start..j];
                let mut k = j;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if b.get(k) == Some(&b'(') {
                    return Err(MetaError::Unsupported(format!(
                        "function `{name}(...)` is not supported in meta rules"
                    )));
                }
                (Tok::Name(name.to_string()), j - start)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(MetaError::Syntax(format!(
                    "unexpected `{ch}` in meta expression"
                )));
            }
        };
        out.push(tok);
        i += len;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    /// Nodes copied for chained comparisons (`A < B < C` holds `B` twice): nested chains
    /// double the tree at each level, so the copies have a budget.
    copied: usize,
}

/// Nodes chained comparisons may copy in one expression: far more than any real meta
/// needs, far less than 22 nested chains made (2 GB).
const MAX_COPIED_NODES: usize = 10_000;

fn node_count<R>(node: &Node<R>) -> usize {
    match node {
        Node::Num(_) | Node::Ref(_) => 1,
        Node::Not(x) | Node::Neg(x) => 1 + node_count(x),
        Node::Bin(_, a, b) => 1 + node_count(a) + node_count(b),
    }
}

/// Nesting bound, so a hostile expression cannot overflow the stack.
const MAX_DEPTH: usize = 200;

/// Height bound of the parsed tree: a flat chain (`A + B + C + …`) nests one level per
/// operator, and evaluating, printing and dropping the tree recurse that deep.
const MAX_HEIGHT: usize = 1000;

impl Parser {
    fn expr(&mut self, depth: usize) -> Result<Node<String>, MetaError> {
        self.binary(0, depth).map(|(node, _)| node)
    }

    /// The expression and its tree height.
    fn binary(&mut self, min_prec: u8, depth: usize) -> Result<(Node<String>, usize), MetaError> {
        let (mut left, mut height) = self.unary(depth)?;
        // The right operand of a comparison just made, for Perl's chained comparisons
        // (5.32 and later, which SpamAssassin 4 runs on): `1 < A < 2` is `1 < A && A < 2`,
        // `A == B == C` is `A == B && B == C`; it was read `(1 < A) < 2`.
        let mut chain: Option<(u8, Node<String>)> = None;
        while let Some(Tok::Op(op)) = self.tokens.get(self.pos).cloned() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let (right, right_height) = self.binary(prec + 1, depth)?;
            height = 1 + height.max(right_height) + usize::from(chain.is_some());
            if height > MAX_HEIGHT {
                return Err(MetaError::Syntax(format!(
                    "meta expression too long (more than {MAX_HEIGHT} chained operators)"
                )));
            }
            let compares = op.compares();
            // A comparison's right operand is kept for a chain that may follow: a copy.
            let kept = if compares {
                self.copied += node_count(&right);
                if self.copied > MAX_COPIED_NODES {
                    return Err(MetaError::Syntax(format!(
                        "meta expression too large (chained comparisons copy more than {MAX_COPIED_NODES} nodes)"
                    )));
                }
                Some(right.clone())
            } else {
                None
            };
            left = match chain.take() {
                Some((chained, middle)) if compares && chained == prec => {
                    let next = Node::Bin(op, Box::new(middle), Box::new(right));
                    Node::Bin(BinOp::And, Box::new(left), Box::new(next))
                }
                _ => Node::Bin(op, Box::new(left), Box::new(right)),
            };
            chain = kept.map(|r| (prec, r));
        }
        Ok((left, height))
    }

    fn unary(&mut self, depth: usize) -> Result<(Node<String>, usize), MetaError> {
        if depth > MAX_DEPTH {
            return Err(MetaError::Syntax(
                "meta expression nested too deeply".into(),
            ));
        }
        let tok = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Num(n)) => Ok((Node::Num(n), 1)),
            Some(Tok::Name(n)) => Ok((Node::Ref(n), 1)),
            Some(Tok::Not) => {
                let (x, h) = self.unary(depth + 1)?;
                Ok((Node::Not(Box::new(x)), h + 1))
            }
            Some(Tok::Op(BinOp::Sub)) => {
                let (x, h) = self.unary(depth + 1)?;
                Ok((Node::Neg(Box::new(x)), h + 1))
            }
            Some(Tok::Op(BinOp::Add)) => self.unary(depth + 1),
            Some(Tok::LParen) => {
                let inner = self.binary(0, depth + 1)?;
                match self.tokens.get(self.pos) {
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err(MetaError::Syntax("missing `)` in meta expression".into())),
                }
            }
            Some(t) => Err(MetaError::Syntax(format!(
                "unexpected {t} in meta expression"
            ))),
            None => Err(MetaError::Syntax("meta expression ends too early".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, vals: &[(&str, f64)]) -> f64 {
        let e = MetaExpr::parse(text).unwrap();
        e.tree.eval(&|n: &String| {
            vals.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| *v)
                .unwrap_or(0.0)
        })
    }

    #[test]
    fn precedence_and_arithmetic() {
        assert_eq!(eval("(A + B + C) >= 2", &[("A", 1.0), ("C", 1.0)]), 1.0);
        assert_eq!(eval("(A + B + C) >= 2", &[("A", 1.0)]), 0.0);
        assert_eq!(eval("A && !B", &[("A", 1.0)]), 1.0);
        assert_eq!(eval("A && !B", &[("A", 1.0), ("B", 1.0)]), 0.0);
        assert_eq!(eval("1 + 2 * 3", &[]), 7.0);
        assert_eq!(eval("A || B > 1", &[("B", 3.0)]), 1.0);
        assert_eq!(eval("-A + 2 == 1", &[("A", 1.0)]), 1.0);
        // Regression (review): Perl dies dividing by zero, and SpamAssassin's meta does
        // not fire; the quotient read as 0 and `(A / Z) < 1` fired.
        assert!(eval("A / 0", &[("A", 1.0)]).is_nan());
        assert!(eval("(A / Z) < 1", &[("A", 2.0)]).is_nan());
        assert!(eval("!(A / Z > 1)", &[("A", 2.0)]).is_nan());
        assert_eq!(eval("A || B / Z", &[("A", 1.0)]), 1.0, "never evaluated");
        assert_eq!(eval("B && A / Z", &[("A", 1.0)]), 0.0, "never evaluated");
    }

    /// Regression (review): `^` (SpamAssassin's XOR, Perl's bitwise `^`) was a syntax error,
    /// which refused the whole rule set. It binds looser than `==`, tighter than `&&`.
    #[test]
    fn xor_is_perls_bitwise_xor_at_its_precedence() {
        assert_eq!(eval("A ^ B", &[("A", 1.0)]), 1.0);
        assert_eq!(eval("A ^ B", &[("A", 1.0), ("B", 1.0)]), 0.0);
        assert_eq!(eval("A ^ B", &[]), 0.0);
        assert_eq!(eval("A ^ B", &[("A", 3.0), ("B", 1.0)]), 2.0);
        assert_eq!(eval("1 ^ 1 == 1", &[]), 0.0);
        assert_eq!(eval("A && B ^ C", &[("A", 1.0), ("B", 1.0)]), 1.0);
        assert_eq!(eval("A ^ B || C", &[("A", 1.0), ("B", 1.0)]), 0.0);
        assert_eq!(eval("A + B ^ 1", &[("A", 1.0), ("B", 1.0)]), 3.0);
        assert_eq!(MetaExpr::parse("A^B").unwrap().to_string(), "(A ^ B)");
    }

    /// Regression (review): `1 < __C < 2` was read `(1 < __C) < 2` and fired for
    /// `__C = 2`; Perl 5.32 and later (SpamAssassin 4) chain comparisons of one kind.
    #[test]
    fn comparisons_chain_as_perl_chains_them() {
        assert_eq!(eval("1 < C < 2", &[("C", 2.0)]), 0.0);
        assert_eq!(eval("1 < C < 3", &[("C", 2.0)]), 1.0);
        assert_eq!(eval("C == 2 == 1", &[("C", 2.0)]), 0.0);
        assert_eq!(
            eval("A == B == C", &[("A", 1.0), ("B", 1.0), ("C", 1.0)]),
            1.0
        );
        assert_eq!(eval("0 <= A <= B < 5", &[("A", 1.0), ("B", 4.0)]), 1.0);
        assert_eq!(eval("0 <= A <= B < 5", &[("A", 1.0), ("B", 5.0)]), 0.0);
        // Different kinds do not chain: `<` binds tighter than `==`.
        assert_eq!(eval("A < B == 1", &[("B", 1.0)]), 1.0);
        assert_eq!(eval("(1 < C) < 2", &[("C", 2.0)]), 1.0);
        // Nested chains double the tree at each level (review): refused past a budget.
        let mut nested = String::from("X");
        for _ in 0..30 {
            nested = format!("1 < ({nested}) < 2");
        }
        assert!(matches!(
            MetaExpr::parse(&nested),
            Err(MetaError::Syntax(_))
        ));
    }

    #[test]
    fn canonical_form_ignores_whitespace() {
        let a = MetaExpr::parse("(A+B)>=2 &&!C").unwrap();
        let b = MetaExpr::parse("( A + B )  >= 2\t&& ! C").unwrap();
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.names(), vec!["A", "B", "C"]);
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            MetaExpr::parse("A && (B"),
            Err(MetaError::Syntax(_))
        ));
        assert!(matches!(
            MetaExpr::parse("rules_matching(__X) > 1"),
            Err(MetaError::Unsupported(_))
        ));
        assert!(matches!(
            MetaExpr::parse("A $ B"),
            Err(MetaError::Syntax(_))
        ));
        let deep = "(".repeat(1000) + "A" + &")".repeat(1000);
        assert!(MetaExpr::parse(&deep).is_err());
    }

    /// A long flat chain (`A + A + ... + A`) nests one tree level per operator, so it
    /// must be bounded like parentheses are: evaluating, printing or dropping a tree
    /// 100,000 levels deep overflows the stack and takes the process down.
    #[test]
    fn a_long_operator_chain_is_refused_not_a_stack_overflow() {
        let chain = vec!["A"; 100_000].join(" + ");
        match MetaExpr::parse(&chain) {
            Err(MetaError::Syntax(_)) => {}
            Ok(e) => {
                // Reaching here means the tree was built: using it must not crash.
                let v = e.tree.eval(&|_: &String| 1.0);
                let text = e.to_string();
                panic!(
                    "accepted a 100,000-deep chain (value {v}, {} bytes)",
                    text.len()
                );
            }
            Err(other) => panic!("{other:?}"),
        }
        // Ordinary long metas still parse.
        let ok = vec!["A"; 150].join(" + ");
        assert!(MetaExpr::parse(&ok).is_ok());
    }
}
