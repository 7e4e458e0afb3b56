//! A small subset of EventQL, enough to test the adapter's pass-through and
//! the `isEventQlQueryTrue` precondition against the test server:
//!
//! ```text
//! FROM e IN events
//! [WHERE <condition>]
//! [ORDER BY e.<field> [ASC | DESC]]
//! [SKIP <n>] [TOP <n>]
//! PROJECT INTO [DISTINCT] <expression>
//! ```
//!
//! Expressions: string (`"..."` or `'...'`), number, `true`, `false` and
//! `null` literals; field access (`e.type`, `e.data.amount`; a missing
//! field is `null`); `==`, `!=`, `<`, `<=`, `>`, `>=` (strings compare
//! byte-wise); `<array> CONTAINS <value>` (membership; a missing array
//! contains nothing); `AND`, `OR`, `NOT`;
//! parentheses; records `{ name: <expression>, ... }`; and the aggregate
//! `COUNT()`, which makes the projection a single row over all matching
//! events (and cannot be mixed with event fields). Keywords are
//! case-insensitive; `//` and `/* */` comments are skipped. Ordering by
//! `time` or `id` follows the log (the server assigns both in order).
//!
//! Everything else (several sources, subqueries, `GROUP BY`, other
//! functions, `subjects` and `eventtypes`) is refused as malformed, never
//! answered wrongly.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// A query that does not parse, or cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// The text is not a query of the supported subset.
    Malformed(String),
    /// The query parses but its evaluation fails (a type mismatch).
    Unevaluable(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(message) => write!(f, "query malformed: {message}"),
            Self::Unevaluable(message) => write!(f, "query unevaluable: {message}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    const SYMBOLS: &[&str] = &["==", "!=", "<=", ">=", "<", ">", "(", ")", "{", "}", ",", ":", "."];
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").ok_or_else(|| QueryError::Malformed("unterminated comment".into()))?;
            i += end + 2;
        } else if c == b'"' || c == b'\'' {
            let end =
                rest[1..].find(char::from(c)).ok_or_else(|| QueryError::Malformed("unterminated string".into()))?;
            tokens.push(Token::Str(rest[1..=end].to_owned()));
            i += end + 2;
        } else if c.is_ascii_digit() || (c == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let len = rest[1..].find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).map_or(rest.len(), |n| n + 1);
            let number =
                rest[..len].parse().map_err(|_| QueryError::Malformed(format!("bad number {}", &rest[..len])))?;
            tokens.push(Token::Num(number));
            i += len;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let len = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).unwrap_or(rest.len());
            tokens.push(Token::Word(rest[..len].to_owned()));
            i += len;
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            tokens.push(Token::Sym(symbol));
            i += symbol.len();
        } else {
            return Err(QueryError::Malformed(format!("unexpected character {:?}", rest.chars().next())));
        }
    }
    Ok(tokens)
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(Value),
    /// `alias.a.b`: the path after the alias.
    Field(Vec<String>),
    Count,
    Not(Box<Expr>),
    Binary(Box<Expr>, &'static str, Box<Expr>),
    Record(Vec<(String, Expr)>),
}

impl Expr {
    fn has_aggregate(&self) -> bool {
        match self {
            Self::Count => true,
            Self::Literal(_) | Self::Field(_) => false,
            Self::Not(inner) => inner.has_aggregate(),
            Self::Binary(a, _, b) => a.has_aggregate() || b.has_aggregate(),
            Self::Record(fields) => fields.iter().any(|(_, e)| e.has_aggregate()),
        }
    }

    fn has_field(&self) -> bool {
        match self {
            Self::Field(_) => true,
            Self::Literal(_) | Self::Count => false,
            Self::Not(inner) => inner.has_field(),
            Self::Binary(a, _, b) => a.has_field() || b.has_field(),
            Self::Record(fields) => fields.iter().any(|(_, e)| e.has_field()),
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    filter: Option<Expr>,
    order: Option<(Vec<String>, bool)>,
    skip: usize,
    top: Option<usize>,
    distinct: bool,
    projection: Expr,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    alias: String,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), QueryError> {
        if self.is_keyword(keyword) {
            self.at += 1;
            Ok(())
        } else {
            Err(QueryError::Malformed(format!("expected {keyword}, found {:?}", self.peek())))
        }
    }

    fn symbol(&mut self, symbol: &str) -> Result<(), QueryError> {
        match self.next() {
            Some(Token::Sym(s)) if s == symbol => Ok(()),
            other => Err(QueryError::Malformed(format!("expected `{symbol}`, found {other:?}"))),
        }
    }

    fn word(&mut self) -> Result<String, QueryError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            other => Err(QueryError::Malformed(format!("expected a name, found {other:?}"))),
        }
    }

    fn count(&mut self) -> Result<usize, QueryError> {
        match self.next() {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(Token::Num(n)) if n >= 0.0 && n.fract() == 0.0 => Ok(n as usize),
            other => Err(QueryError::Malformed(format!("expected a count, found {other:?}"))),
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.keyword("FROM")?;
        self.alias = self.word()?;
        self.keyword("IN")?;
        let source = self.word()?;
        if !source.eq_ignore_ascii_case("events") {
            return Err(QueryError::Malformed(format!("the test server queries only `events`, not `{source}`")));
        }
        let filter = if self.is_keyword("WHERE") {
            self.at += 1;
            Some(self.expr()?)
        } else {
            None
        };
        let mut order = None;
        if self.is_keyword("ORDER") {
            self.at += 1;
            self.keyword("BY")?;
            let Expr::Field(path) = self.primary()? else {
                return Err(QueryError::Malformed("ORDER BY takes a field".into()));
            };
            let descending = if self.is_keyword("DESC") {
                self.at += 1;
                true
            } else {
                if self.is_keyword("ASC") {
                    self.at += 1;
                }
                false
            };
            order = Some((path, descending));
        }
        let mut skip = 0;
        if self.is_keyword("SKIP") {
            self.at += 1;
            skip = self.count()?;
        }
        let mut top = None;
        if self.is_keyword("TOP") {
            self.at += 1;
            top = Some(self.count()?);
        }
        self.keyword("PROJECT")?;
        self.keyword("INTO")?;
        let distinct = self.is_keyword("DISTINCT");
        if distinct {
            self.at += 1;
        }
        let projection = self.expr()?;
        if let Some(token) = self.peek() {
            return Err(QueryError::Malformed(format!("unexpected {token:?} after the projection")));
        }
        if filter.as_ref().is_some_and(Expr::has_aggregate) {
            return Err(QueryError::Malformed("aggregates belong in PROJECT INTO".into()));
        }
        if projection.has_aggregate() && projection.has_field() {
            return Err(QueryError::Malformed("an aggregate projection cannot use event fields".into()));
        }
        Ok(Query { filter, order, skip, top, distinct, projection })
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while self.is_keyword("OR") {
            self.at += 1;
            left = Expr::Binary(Box::new(left), "OR", Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.not()?;
        while self.is_keyword("AND") {
            self.at += 1;
            left = Expr::Binary(Box::new(left), "AND", Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.is_keyword("NOT") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        let left = self.primary()?;
        if let Some(Token::Sym(op @ ("==" | "!=" | "<" | "<=" | ">" | ">="))) = self.peek() {
            let op = *op;
            self.at += 1;
            return Ok(Expr::Binary(Box::new(left), op, Box::new(self.primary()?)));
        }
        if self.is_keyword("CONTAINS") {
            self.at += 1;
            return Ok(Expr::Binary(Box::new(left), "CONTAINS", Box::new(self.primary()?)));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Expr::Literal(Value::String(s))),
            Some(Token::Num(n)) => {
                Ok(Expr::Literal(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)))
            }
            Some(Token::Sym("(")) => {
                let inner = self.expr()?;
                self.symbol(")")?;
                Ok(inner)
            }
            Some(Token::Sym("{")) => {
                let mut fields = Vec::new();
                while !matches!(self.peek(), Some(Token::Sym("}"))) {
                    let name = self.word()?;
                    self.symbol(":")?;
                    fields.push((name, self.expr()?));
                    if matches!(self.peek(), Some(Token::Sym(","))) {
                        self.at += 1;
                    }
                }
                self.symbol("}")?;
                Ok(Expr::Record(fields))
            }
            Some(Token::Word(word)) => {
                if word.eq_ignore_ascii_case("true") {
                    return Ok(Expr::Literal(Value::Bool(true)));
                }
                if word.eq_ignore_ascii_case("false") {
                    return Ok(Expr::Literal(Value::Bool(false)));
                }
                if word.eq_ignore_ascii_case("null") {
                    return Ok(Expr::Literal(Value::Null));
                }
                if word.eq_ignore_ascii_case("COUNT") {
                    self.symbol("(")?;
                    self.symbol(")")?;
                    return Ok(Expr::Count);
                }
                if word != self.alias {
                    return Err(QueryError::Malformed(format!("unknown name `{word}`")));
                }
                let mut path = Vec::new();
                while matches!(self.peek(), Some(Token::Sym("."))) {
                    self.at += 1;
                    path.push(self.word()?);
                }
                Ok(Expr::Field(path))
            }
            other => Err(QueryError::Malformed(format!("unexpected {other:?}"))),
        }
    }
}

/// Parses a query of the supported subset.
pub(crate) fn parse(text: &str) -> Result<Query, QueryError> {
    let tokens = tokenize(text)?;
    Parser { tokens, at: 0, alias: String::new() }.query()
}

fn field<'a>(event: &'a Value, path: &[String]) -> &'a Value {
    path.iter().try_fold(event, |value, name| value.get(name)).unwrap_or(&Value::Null)
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn boolean(value: &Value, what: &str) -> Result<bool, QueryError> {
    value.as_bool().ok_or_else(|| QueryError::Unevaluable(format!("{what} is {value}, not a boolean")))
}

fn eval(expr: &Expr, event: &Value, count: usize) -> Result<Value, QueryError> {
    Ok(match expr {
        Expr::Literal(value) => value.clone(),
        Expr::Field(path) => field(event, path).clone(),
        Expr::Count => Value::from(count),
        Expr::Not(inner) => Value::Bool(!boolean(&eval(inner, event, count)?, "the operand of NOT")?),
        Expr::Record(fields) => {
            let mut record = Map::new();
            for (name, expr) in fields {
                record.insert(name.clone(), eval(expr, event, count)?);
            }
            Value::Object(record)
        }
        Expr::Binary(a, op @ ("AND" | "OR"), b) => {
            let a = boolean(&eval(a, event, count)?, "an operand of AND/OR")?;
            let b = boolean(&eval(b, event, count)?, "an operand of AND/OR")?;
            Value::Bool(if *op == "AND" { a && b } else { a || b })
        }
        Expr::Binary(a, "CONTAINS", b) => {
            let (a, b) = (eval(a, event, count)?, eval(b, event, count)?);
            Value::Bool(match &a {
                Value::Array(items) => items.iter().any(|item| equal(item, &b)),
                Value::Null => false,
                other => return Err(QueryError::Unevaluable(format!("{other} is not an array: it contains nothing"))),
            })
        }
        Expr::Binary(a, op, b) => {
            let (a, b) = (eval(a, event, count)?, eval(b, event, count)?);
            Value::Bool(match *op {
                "==" => equal(&a, &b),
                "!=" => !equal(&a, &b),
                _ => {
                    let ordering = compare(&a, &b)
                        .ok_or_else(|| QueryError::Unevaluable(format!("cannot compare {a} and {b} with {op}")))?;
                    match *op {
                        "<" => ordering.is_lt(),
                        "<=" => ordering.is_le(),
                        ">" => ordering.is_gt(),
                        _ => ordering.is_ge(),
                    }
                }
            })
        }
    })
}

/// Runs `query` over `events` (in log order, as JSON) and returns its rows.
pub(crate) fn run<V: std::borrow::Borrow<Value>>(
    query: &Query,
    events: impl Iterator<Item = V>,
) -> Result<Vec<Value>, QueryError> {
    let mut selected = Vec::new();
    for event in events {
        let keep = match &query.filter {
            Some(filter) => boolean(&eval(filter, event.borrow(), 0)?, "the WHERE condition")?,
            None => true,
        };
        if keep {
            selected.push(event);
        }
    }
    if let Some((path, descending)) = &query.order {
        let by_log = matches!(path.as_slice(), [f] if f == "time" || f == "id");
        if !by_log {
            let mut failed = None;
            selected.sort_by(|a, b| {
                let (a, b) = (field(a.borrow(), path), field(b.borrow(), path));
                compare(a, b).unwrap_or_else(|| {
                    if !(a.is_null() && b.is_null()) {
                        failed.get_or_insert_with(|| format!("cannot order {a} and {b}"));
                    }
                    Ordering::Equal
                })
            });
            if let Some(message) = failed {
                return Err(QueryError::Unevaluable(message));
            }
        }
        if *descending {
            selected.reverse();
        }
    }
    let selected = selected.into_iter().skip(query.skip).take(query.top.unwrap_or(usize::MAX));
    if query.projection.has_aggregate() {
        return Ok(vec![eval(&query.projection, &Value::Null, selected.count())?]);
    }
    let mut rows: Vec<Value> = Vec::new();
    for event in selected {
        let row = eval(&query.projection, event.borrow(), 0)?;
        if !(query.distinct && rows.contains(&row)) {
            rows.push(row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn events() -> Vec<Value> {
        vec![
            json!({"id": "0", "type": "a.b.opened", "subject": "/x/1", "data": {"n": 1}}),
            json!({"id": "1", "type": "a.b.moved", "subject": "/x/1", "data": {"n": 5}}),
            json!({"id": "2", "type": "a.b.opened", "subject": "/x/2", "data": {"n": 3}}),
        ]
    }

    fn rows(text: &str) -> Result<Vec<Value>, QueryError> {
        run(&parse(text)?, events().into_iter())
    }

    #[test]
    fn filters_orders_limits_and_projects() {
        let ids = |rows: Vec<Value>| rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(rows(r#"FROM e IN events WHERE e.type == "a.b.opened" PROJECT INTO e"#).unwrap()), ["0", "2"]);
        assert_eq!(ids(rows("from e in events order by e.time desc top 2 project into e").unwrap()), ["2", "1"]);
        assert_eq!(ids(rows("FROM e IN events ORDER BY e.data.n DESC SKIP 1 PROJECT INTO e").unwrap()), ["2", "0"]);
        assert_eq!(
            rows("FROM e IN events WHERE e.data.n >= 3 AND NOT (e.subject == '/x/2') PROJECT INTO { t: e.type, n: e.data.n }")
                .unwrap(),
            [json!({"t": "a.b.moved", "n": 5})]
        );
        assert_eq!(rows("FROM e IN events PROJECT INTO DISTINCT e.subject").unwrap(), [json!("/x/1"), json!("/x/2")]);
        assert_eq!(rows("FROM e IN events WHERE e.missing == null PROJECT INTO e.id // all\n").unwrap().len(), 3);
    }

    #[test]
    fn contains_tests_membership_and_strings_compare_bytewise() {
        let tagged = vec![
            json!({"id": "0", "type": "p.Subscribed.v1", "data": {"metadata": {"tags": ["course:c1", "student:s1"]}}}),
            json!({"id": "1", "type": "p.Subscribed.v2", "data": {"metadata": {"tags": ["course:c2"]}}}),
            json!({"id": "2", "type": "p.SubscribedLate.v1", "data": {}}),
        ];
        let ids = |text: &str| {
            run(&parse(text).unwrap(), tagged.clone().into_iter())
                .unwrap()
                .iter()
                .map(|row| row.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(r#"FROM e IN events WHERE e.data.metadata.tags CONTAINS "course:c1" PROJECT INTO e.id"#), ["0"]);
        assert_eq!(ids("FROM e IN events WHERE e.data.metadata.tags contains 'nothing' PROJECT INTO e.id"), [""; 0]);
        assert_eq!(
            ids(r#"FROM e IN events WHERE e.type >= "p.Subscribed.v" AND e.type < "p.Subscribed.w" PROJECT INTO e.id"#),
            ["0", "1"]
        );
        assert!(matches!(
            run(&parse("FROM e IN events WHERE e.type CONTAINS 'p' PROJECT INTO e").unwrap(), tagged.into_iter()),
            Err(QueryError::Unevaluable(_))
        ));
    }

    #[test]
    fn counts_into_one_row() {
        assert_eq!(rows(r#"FROM e IN events WHERE e.subject == "/x/1" PROJECT INTO COUNT()"#).unwrap(), [json!(2)]);
        assert_eq!(
            rows(r#"FROM e IN events WHERE e.type == "a.b.moved" AND e.subject == "/x/2" PROJECT INTO COUNT() == 0"#)
                .unwrap(),
            [json!(true)]
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for text in [
            "FROM e IN subjects PROJECT INTO e",
            "FROM e IN events PROJECT INTO f",
            "FROM e IN events GROUP BY e.type PROJECT INTO e",
            "FROM e IN events PROJECT INTO { n: COUNT(), t: e.type }",
            "FROM e IN events WHERE COUNT() > 1 PROJECT INTO e",
            "FROM e IN events PROJECT INTO e e",
            r#"FROM e IN events WHERE e.type == "open PROJECT INTO e"#,
        ] {
            assert!(matches!(parse(text), Err(QueryError::Malformed(_))), "{text}");
        }
        assert!(matches!(rows("FROM e IN events WHERE e.data.n PROJECT INTO e"), Err(QueryError::Unevaluable(_))));
        assert!(matches!(
            rows("FROM e IN events WHERE e.data.n < 'x' PROJECT INTO e"),
            Err(QueryError::Unevaluable(_))
        ));
    }
}
