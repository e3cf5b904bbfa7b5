//! Kubernetes label and field selectors as kube-apiserver parses the `labelSelector` and
//! `fieldSelector` query parameters (k8s.io/apimachinery v0.36 grammar, validation, error texts),
//! matched against `serde_json::Value` objects. Hand-written: no maintained crate parses them.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// A parsed `labelSelector`: requirements that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key (stable), as upstream sorts them after parsing.
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
    /// Sorted and de-duplicated, as upstream collects them in a string set.
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl LabelSelector {
    /// Parses the label selector syntax of `labels.Parse`; the error text is upstream's.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut parser = Parser {
            items: lex(s),
            pos: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Whether all requirements hold for `labels` (an object's `metadata.labels`; `None` is
    /// an empty map). A label whose value is not a JSON string counts as absent.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels
                .and_then(|labels| labels.get(&r.key))
                .and_then(Value::as_str);
            r.matches(value)
        })
    }

    /// True when the selector has no requirement and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !listed(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let have = value.and_then(|v| v.parse::<i64>().ok());
                // The parser checked that the single value is an integer.
                let want = self.values.first().and_then(|v| v.parse::<i64>().ok());
                match (have, want) {
                    (Some(have), Some(want)) if self.op == Operator::GreaterThan => have > want,
                    (Some(have), Some(want)) => have < want,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let values = self.values.join(",");
        match self.op {
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Equals => write!(f, "{key}={values}"),
            Operator::DoubleEquals => write!(f, "{key}=={values}"),
            Operator::NotEquals => write!(f, "{key}!={values}"),
            Operator::GreaterThan => write!(f, "{key}>{values}"),
            Operator::LessThan => write!(f, "{key}<{values}"),
            Operator::In => write!(f, "{key} in ({values})"),
            Operator::NotIn => write!(f, "{key} notin ({values})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    token: Token,
    literal: &'a str,
}

const END: Item<'static> = Item {
    token: Token::EndOfString,
    literal: "",
};

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenizes like upstream's byte-wise lexer, which reads a NUL byte as "no more input": a
/// NUL where a token would start ends the input, and one right after a token is skipped.
fn lex(s: &str) -> Vec<Item<'_>> {
    let bytes = s.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    loop {
        while bytes.get(pos).copied().is_some_and(is_whitespace) {
            pos += 1;
        }
        let start = pos;
        let token = match bytes.get(pos).copied() {
            None | Some(0) => break,
            Some(b) if is_special(b) => {
                let (token, len) = match (b, bytes.get(pos + 1)) {
                    (b'=', Some(b'=')) => (Token::DoubleEquals, 2),
                    (b'!', Some(b'=')) => (Token::NotEquals, 2),
                    (b'=', _) => (Token::Equals, 1),
                    (b'!', _) => (Token::DoesNotExist, 1),
                    (b'(', _) => (Token::OpenPar, 1),
                    (b')', _) => (Token::ClosedPar, 1),
                    (b',', _) => (Token::Comma, 1),
                    (b'>', _) => (Token::GreaterThan, 1),
                    _ => (Token::LessThan, 1),
                };
                pos += len;
                token
            }
            Some(_) => {
                while bytes
                    .get(pos)
                    .is_some_and(|&b| b != 0 && !is_special(b) && !is_whitespace(b))
                {
                    pos += 1;
                }
                Token::Identifier
            }
        };
        // Slicing cannot split a character: tokens start and end next to ASCII bytes or at the
        // ends of the string.
        let literal = &s[start..pos];
        let token = match (token, literal) {
            (Token::Identifier, "in") => Token::In,
            (Token::Identifier, "notin") => Token::NotIn,
            (token, _) => token,
        };
        items.push(Item { token, literal });
        if bytes.get(pos) == Some(&0) {
            pos += 1;
        }
    }
    items.push(END);
    items
}

/// Where `in` and `notin` are read as keywords: only in operator position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    items: Vec<Item<'a>>,
    pos: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> Item<'a> {
        let mut item = self.items.get(self.pos).copied().unwrap_or(END);
        if context == Context::Values && matches!(item.token, Token::In | Token::NotIn) {
            item.token = Token::Identifier;
        }
        item
    }

    fn consume(&mut self, context: Context) -> Item<'a> {
        let item = self.lookahead(context);
        if self.pos < self.items.len() {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let next = self.lookahead(Context::Values);
            match next.token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let after = self.consume(Context::Values);
                    match after.token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let next = self.lookahead(Context::Values);
                            if !matches!(next.token, Token::Identifier | Token::DoesNotExist) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                after.literal
                            ));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        next.literal
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(op) = unary {
            return new_requirement(key, op, BTreeSet::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, op, values)
    }

    /// Reads `[!] KEY`; the operator is `Exists` or `DoesNotExist` when nothing else follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let mut item = self.consume(Context::Values);
        let negated = item.token == Token::DoesNotExist;
        if negated {
            item = self.consume(Context::Values);
        }
        if item.token != Token::Identifier {
            return Err(format!("found '{}', expected: identifier", item.literal));
        }
        let errors = label_key_errors(item.literal);
        if !errors.is_empty() {
            // Upstream validates the key here against the parser's nil field path.
            return Err(field_invalid("<nil>", item.literal, &errors.join("; ")));
        }
        let next = self.lookahead(Context::Values).token;
        let op = if negated {
            Some(Operator::DoesNotExist)
        } else if matches!(next, Token::EndOfString | Token::Comma) {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((item.literal, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let item = self.consume(Context::KeyAndOperator);
        match item.token {
            Token::In => Ok(Operator::In),
            Token::Equals => Ok(Operator::Equals),
            Token::DoubleEquals => Ok(Operator::DoubleEquals),
            Token::GreaterThan => Ok(Operator::GreaterThan),
            Token::LessThan => Ok(Operator::LessThan),
            Token::NotIn => Ok(Operator::NotIn),
            Token::NotEquals => Ok(Operator::NotEquals),
            _ => Err(format!(
                "found '{}', expected: {BINARY_OPERATORS}",
                item.literal
            )),
        }
    }

    /// Reads `( VALUE, ... )`; empty entries, as in `()` or `(a,,b)`, are the empty value.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let open = self.consume(Context::Values);
        if open.token != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", open.literal));
        }
        let next = self.lookahead(Context::Values);
        match next.token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                // The list ends only in front of ')'.
                self.consume(Context::Values);
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                next.literal
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let item = self.consume(Context::Values);
            match item.token {
                Token::Identifier => {
                    values.insert(item.literal.to_owned());
                    let next = self.lookahead(Context::Values);
                    match next.token {
                        Token::Comma => {}
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(format!("found '{}', expected: ',' or ')'", next.literal));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.lookahead(Context::Values).token {
                        Token::ClosedPar => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        item.literal
                    ));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        if matches!(
            self.lookahead(Context::Values).token,
            Token::EndOfString | Token::Comma
        ) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let item = self.consume(Context::Values);
        if item.token == Token::Identifier {
            Ok(BTreeSet::from([item.literal.to_owned()]))
        } else {
            Err(format!("found '{}', expected: identifier", item.literal))
        }
    }
}

/// Upstream's `NewRequirement` checks as they can fail for parsed input (the key was already
/// validated, and the parser always yields the value count each operator needs).
fn new_requirement(
    key: &str,
    op: Operator,
    values: BTreeSet<String>,
) -> Result<Requirement, String> {
    let values: Vec<String> = values.into_iter().collect();
    let mut errors = Vec::new();
    if matches!(op, Operator::GreaterThan | Operator::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errors.push(field_invalid(
                    &format!("values[{i}]"),
                    v,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let problems = label_value_errors(v);
        if !problems.is_empty() {
            errors.push(field_invalid(
                &format!("values[{i}][{key}]"),
                v,
                &problems.join("; "),
            ));
        }
    }
    if errors.is_empty() {
        Ok(Requirement {
            key: key.to_owned(),
            op,
            values,
        })
    } else {
        Err(aggregate(errors))
    }
}

/// Joins errors as upstream's `utilerrors.Aggregate` prints them.
fn aggregate(errors: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for e in errors {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    if unique.len() == 1 {
        unique.concat()
    } else {
        format!("[{}]", unique.join(", "))
    }
}

/// Upstream's `field.Invalid(path, value, detail).Error()` for a string value.
fn field_invalid(path: &str, value: &str, detail: &str) -> String {
    format!(
        "{path}: Invalid value: {}: {detail}",
        crate::gostr::quote(value)
    )
}

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_MAX_LEN: usize = 63;
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

/// Upstream's `content.IsLabelKey`: `[prefix/]name`.
fn label_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    LABEL_KEY_ERR,
                    LABEL_KEY_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_MAX_LEN {
        errors.push(format!("name part {}", max_len_error(LABEL_MAX_LEN)));
    }
    if !is_label_name(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_ERR,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Upstream's `content.IsLabelValue`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_MAX_LEN {
        errors.push(max_len_error(LABEL_MAX_LEN));
    }
    if !value.is_empty() && !is_label_name(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LEN));
    }
    if !value.split('.').all(is_dns1123_label) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            edge(first) && edge(last) && b.iter().all(|c| edge(c) || *c == b'-')
        }
        _ => false,
    }
}

fn max_len_error(len: usize) -> String {
    format!("must be no more than {len} bytes")
}

/// Upstream's `RegexError`, double spaces after the example commas included.
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{re}')",
        examples.join(" or ")
    )
}

/// A parsed `fieldSelector`: `field=value`, `field==value` or `field!=value` terms, all of
/// which must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// Sorted by canonical text, so equal selectors print alike.
    requirements: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    negated: bool,
    value: String,
}

impl FieldSelector {
    /// Parses the syntax of `fields.ParseSelector`; the error text is upstream's. Whitespace
    /// is part of fields and values, as upstream keeps it.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut terms = split_terms(s);
        // Upstream parses terms in sorted order, which decides which bad term is reported.
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, negated, raw)) = split_term(term) else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let value = unescape_value(raw)?;
            // Upstream turns a term with neither field nor value into "everything".
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                negated,
                value,
            });
        }
        requirements.sort_by_cached_key(ToString::to_string);
        Ok(FieldSelector { requirements })
    }

    /// The selected field names, in selector order, for the caller to check against the
    /// fields its resource supports.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether every term holds for `obj`, each field being a dotted path into it compared
    /// as a string: absent or `null` fields as `""`, booleans and numbers as JSON prints them.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_text(obj, &r.field) == r.value) != r.negated)
    }

    /// True when the selector has no term and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "!=" } else { "=" };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// The text a field selector compares for `path` in `obj`: strings as they are, absent
/// fields and `null` as `""` (upstream's field sets hold `spec.nodeName=""` for an
/// unscheduled pod), booleans and numbers as JSON prints them (`true`, `3`), and objects or
/// arrays as compact JSON, which no upstream field set holds.
fn field_text<'v>(obj: &'v Value, path: &str) -> Cow<'v, str> {
    let mut current = obj;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return Cow::Borrowed(""),
        }
    }
    match current {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// Splits on commas that no backslash escapes, keeping the escapes in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator (`!=` before `==` before `=`); fields have no escaping.
/// Returns the field, whether the operator is `!=`, and the still-escaped value.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        if let Some(value) = rest.strip_prefix("!=") {
            Some((&term[..i], true, value))
        } else {
            rest.strip_prefix("==")
                .or_else(|| rest.strip_prefix('='))
                .map(|value| (&term[..i], false, value))
        }
    })
}

/// Upstream's `fields.EscapeValue`: backslash before `\`, `,` and `=`.
fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Upstream's `fields.UnescapeValue`, with its error texts.
fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, ',' | '=') {
            return Err(format!(
                "invalid field selector: unescaped character in value: {}",
                c as u32
            ));
        } else {
            out.push(c);
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect()
    }

    fn label_match(selector: &str, pairs: &[(&str, &str)]) -> bool {
        LabelSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
            .matches(Some(&labels(pairs)))
    }

    fn label_error(selector: &str) -> String {
        LabelSelector::parse(selector).expect_err(selector)
    }

    fn field_match(selector: &str, obj: &Value) -> bool {
        FieldSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
            .matches(obj)
    }

    const NAME_REGEX_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn empty_or_blank_label_selector_selects_everything() {
        for s in ["", "   ", "\t\r\n"] {
            let sel = LabelSelector::parse(s).expect(s);
            assert!(sel.is_empty());
            assert!(sel.matches(None));
            assert!(sel.matches(Some(&labels(&[("a", "b")]))));
            assert_eq!(sel.to_string(), "");
        }
    }

    #[test]
    fn equals_and_double_equals_require_that_value() {
        for s in ["app=web", "app==web", " app = web "] {
            assert!(label_match(s, &[("app", "web")]), "{s}");
            assert!(!label_match(s, &[("app", "db")]), "{s}");
            assert!(!label_match(s, &[]), "{s}");
            assert!(!LabelSelector::parse(s).expect(s).is_empty());
        }
    }

    #[test]
    fn equals_with_nothing_after_it_means_the_empty_value() {
        assert!(label_match("app=", &[("app", "")]));
        assert!(!label_match("app=", &[]));
        assert!(label_match("app=,tier= ", &[("app", ""), ("tier", "")]));
    }

    #[test]
    fn not_equals_matches_a_missing_or_different_label() {
        assert!(label_match("app!=web", &[]));
        assert!(label_match("app!=web", &[("app", "db")]));
        assert!(!label_match("app!=web", &[("app", "web")]));
    }

    #[test]
    fn in_matches_any_listed_value_and_needs_the_label() {
        let s = "env in (prod, staging)";
        assert!(label_match(s, &[("env", "prod")]));
        assert!(label_match(s, &[("env", "staging")]));
        assert!(!label_match(s, &[("env", "dev")]));
        assert!(!label_match(s, &[]));
    }

    #[test]
    fn notin_matches_a_missing_or_unlisted_label() {
        let s = "env notin (prod)";
        assert!(label_match(s, &[]));
        assert!(label_match(s, &[("env", "dev")]));
        assert!(!label_match(s, &[("env", "prod")]));
    }

    #[test]
    fn bare_key_requires_the_label_and_bang_key_its_absence() {
        assert!(label_match("app", &[("app", "")]));
        assert!(!label_match("app", &[("other", "x")]));
        assert!(label_match("!app", &[("other", "x")]));
        assert!(!label_match("!app", &[("app", "x")]));
        assert!(label_match("! app", &[]));
    }

    #[test]
    fn gt_and_lt_compare_labels_as_integers() {
        assert!(label_match("replicas>1", &[("replicas", "2")]));
        assert!(!label_match("replicas>1", &[("replicas", "1")]));
        assert!(label_match("replicas<10", &[("replicas", "9")]));
        assert!(label_match("replicas<10", &[("replicas", "-3")]));
        assert!(!label_match("replicas<10", &[("replicas", "10")]));
        assert!(!label_match("replicas>1", &[]));
        assert!(!label_match("replicas>1", &[("replicas", "many")]));
        assert!(label_match("n>9", &[("n", "10")]), "integers, not strings");
    }

    #[test]
    fn requirements_are_anded() {
        let s = "app=web,tier!=db,!canary,env in (prod)";
        assert!(label_match(s, &[("app", "web"), ("env", "prod")]));
        assert!(!label_match(
            s,
            &[("app", "web"), ("env", "prod"), ("canary", "1")]
        ));
        assert!(!label_match(s, &[("app", "web")]));
    }

    #[test]
    fn absent_labels_and_non_string_values_count_as_missing() {
        let sel = LabelSelector::parse("!app,tier!=db").expect("parses");
        assert!(sel.matches(None));
        let mut odd = Map::new();
        odd.insert("app".to_owned(), json!(3));
        assert!(sel.matches(Some(&odd)));
        assert!(
            !LabelSelector::parse("app")
                .expect("parses")
                .matches(Some(&odd))
        );
    }

    #[test]
    fn in_and_notin_are_plain_words_outside_operator_position() {
        assert!(label_match("notin=in", &[("notin", "in")]));
        assert!(label_match("in in (in,notin)", &[("in", "notin")]));
        assert!(label_match("in", &[("in", "x")]));
        assert!(label_match("!notin", &[]));
    }

    #[test]
    fn empty_entries_in_a_value_set_are_the_empty_value() {
        let sel = LabelSelector::parse("x in (foo,,baz),y,z notin ()").expect("parses");
        assert_eq!(sel.to_string(), "x in (,baz,foo),y,z notin ()");
        assert!(label_match("x in (,)", &[("x", "")]));
        assert!(label_match("x in (a,)", &[("x", "")]));
        assert!(!label_match("x in (a)", &[("x", "")]));
    }

    #[test]
    fn comma_runs_in_a_value_set_add_the_empty_value() {
        for s in ["x in (,,)", "x in (a,,)", "x in (a,,,b)"] {
            assert!(label_match(s, &[("x", "")]), "{s}");
        }
        assert_eq!(
            LabelSelector::parse("x in (b,,a,)")
                .expect("parses")
                .to_string(),
            "x in (,a,b)"
        );
    }

    #[test]
    fn display_sorts_by_key_and_values_and_keeps_operator_spelling() {
        let sel = LabelSelector::parse("z == 1, a in (c, b, c), m!=x,!b ,k>3,k<9").expect("parses");
        assert_eq!(sel.to_string(), "a in (b,c),!b,k>3,k<9,m!=x,z==1");
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        assert!(label_match(
            "app.kubernetes.io/name=web,kubernetes.io/metadata.name",
            &[
                ("app.kubernetes.io/name", "web"),
                ("kubernetes.io/metadata.name", "default"),
            ],
        ));
    }

    #[test]
    fn nul_byte_ends_label_input_as_upstream_lexer_does() {
        let sel = LabelSelector::parse("a=b \0 !!! garbage").expect("parses");
        assert_eq!(sel.to_string(), "a=b");
        assert_eq!(
            LabelSelector::parse("a\0b").expect_err("two words"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn syntax_errors_use_upstream_messages() {
        let cases = [
            ("x=a,", "found '', expected: identifier after ','"),
            (
                ",a",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("x=a y", "found 'y', expected: ',' or 'end of string'"),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a=(b)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "x in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "x in (a,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(label_error(input), want, "input {input:?}");
        }
    }

    #[test]
    fn invalid_keys_are_reported_with_upstream_validation_text() {
        assert_eq!(
            label_error("-app=x"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"-app\": name part {NAME_REGEX_MSG}"
            )
        );
        let long = "a".repeat(64);
        assert_eq!(
            label_error(&long),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 bytes"
            )
        );
        assert!(LabelSelector::parse(&"a".repeat(63)).is_ok());
        assert_eq!(
            label_error("/app"),
            "unable to parse requirement: <nil>: Invalid value: \"/app\": prefix part must be non-empty"
        );
        assert_eq!(
            label_error("Example.com/app"),
            "unable to parse requirement: <nil>: Invalid value: \"Example.com/app\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(
            label_error("example.com/"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"example.com/\": name part must be non-empty; name part {NAME_REGEX_MSG}"
            )
        );
        assert_eq!(
            label_error("a/b/c"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
    }

    #[test]
    fn invalid_values_are_reported_with_upstream_validation_text() {
        assert_eq!(
            label_error("app=-x"),
            format!(
                "unable to parse requirement: values[0][app]: Invalid value: \"-x\": {VALUE_REGEX_MSG}"
            )
        );
        let long = "v".repeat(64);
        assert_eq!(
            label_error(&format!("app={long}")),
            format!(
                "unable to parse requirement: values[0][app]: Invalid value: \"{long}\": must be no more than 63 bytes"
            )
        );
        assert_eq!(
            label_error("app in (ok, _b, -a)"),
            format!(
                "unable to parse requirement: [values[0][app]: Invalid value: \"-a\": {VALUE_REGEX_MSG}, values[1][app]: Invalid value: \"_b\": {VALUE_REGEX_MSG}]"
            )
        );
        assert_eq!(
            label_error("app=a\u{7}\u{200b}é\"b"),
            format!(
                "unable to parse requirement: values[0][app]: Invalid value: \"a\\a\\u200bé\\\"b\": {VALUE_REGEX_MSG}"
            )
        );
    }

    #[test]
    fn gt_and_lt_need_an_integer_value() {
        assert_eq!(
            label_error("a>1.5"),
            "unable to parse requirement: values[0]: Invalid value: \"1.5\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            label_error("a<"),
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            label_error("a>_x"),
            format!(
                "unable to parse requirement: [values[0]: Invalid value: \"_x\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][a]: Invalid value: \"_x\": {VALUE_REGEX_MSG}]"
            )
        );
        assert!(
            LabelSelector::parse("a>-1").is_err(),
            "'-1' is not a label value"
        );
        assert!(LabelSelector::parse("a>99999999999999999999").is_err());
    }

    #[test]
    fn empty_field_selector_selects_everything() {
        for s in ["", ",", ",,", "=", "==", "!="] {
            let sel = FieldSelector::parse(s).expect(s);
            assert!(sel.is_empty(), "{s:?}");
            assert!(sel.matches(&json!({})));
            assert_eq!(sel.to_string(), "");
        }
    }

    #[test]
    fn field_equality_compares_the_field_as_a_string() {
        let pod = json!({"metadata": {"name": "web-0", "namespace": "default"}, "status": {"phase": "Running"}});
        assert!(field_match("metadata.name=web-0", &pod));
        assert!(field_match(
            "metadata.name==web-0,status.phase=Running",
            &pod
        ));
        assert!(!field_match("metadata.name=web-1", &pod));
        assert!(field_match("status.phase!=Pending", &pod));
        assert!(!field_match("status.phase!=Running", &pod));
    }

    #[test]
    fn absent_field_compares_as_the_empty_string() {
        let unscheduled = json!({"spec": {}});
        let scheduled = json!({"spec": {"nodeName": "n1"}});
        assert!(field_match("spec.nodeName=", &unscheduled));
        assert!(field_match(
            "spec.nodeName=",
            &json!({"spec": {"nodeName": null}})
        ));
        assert!(!field_match("spec.nodeName=", &scheduled));
        assert!(field_match("spec.nodeName!=", &scheduled));
        assert!(field_match("spec.nodeName.deeper=", &scheduled));
    }

    #[test]
    fn booleans_and_numbers_compare_as_upstream_prints_them() {
        let obj = json!({"spec": {"hostNetwork": true, "unschedulable": false, "replicas": 3}});
        assert!(field_match("spec.hostNetwork=true", &obj));
        assert!(field_match("spec.unschedulable=false", &obj));
        assert!(field_match("spec.replicas=3", &obj));
    }

    #[test]
    fn nested_paths_reach_into_objects() {
        let event = json!({"involvedObject": {"kind": "Pod", "name": "web-0"}});
        assert!(field_match(
            "involvedObject.kind=Pod,involvedObject.name=web-0",
            &event
        ));
        assert!(!field_match("involvedObject.kind=Node", &event));
    }

    #[test]
    fn escaped_field_values_are_unescaped_and_printed_escaped() {
        let sel = FieldSelector::parse(r"a=x\,y\=z\\").expect("parses");
        assert!(sel.matches(&json!({"a": r"x,y=z\"})));
        assert_eq!(sel.to_string(), r"a=x\,y\=z\\");
        assert!(field_match(r"x=a||y\=b", &json!({"x": "a||y=b"})));
        assert!(field_match("a=!b", &json!({"a": "!b"})));
    }

    #[test]
    fn bad_field_escapes_use_upstream_messages() {
        let cases = [
            (
                "x=a=b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "x==a==b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                r"x=\a",
                r"invalid field selector: invalid escape sequence: \a",
            ),
            (
                r"x=\!",
                r"invalid field selector: invalid escape sequence: \!",
            ),
            (
                r"x=\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                r"x=\\\",
                r"invalid field selector: invalid escape sequence: \",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).expect_err(input),
                want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn field_terms_without_an_operator_are_rejected() {
        let cases = [
            (
                "x in (a)",
                "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
            ),
            ("x", "invalid selector: 'x'; can't understand 'x'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("z,a", "invalid selector: 'z,a'; can't understand 'a'"),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).expect_err(input),
                want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn fields_lists_the_selected_field_names() {
        let sel = FieldSelector::parse("spec.nodeName=n1,metadata.name!=x").expect("parses");
        assert_eq!(
            sel.fields().collect::<Vec<_>>(),
            ["metadata.name", "spec.nodeName"]
        );
    }

    #[test]
    fn field_whitespace_is_part_of_field_and_value() {
        let sel = FieldSelector::parse("a = b").expect("parses");
        assert_eq!(sel.fields().collect::<Vec<_>>(), ["a "]);
        assert!(sel.matches(&json!({"a ": " b"})));
        assert!(!sel.matches(&json!({"a": "b"})));
    }

    #[test]
    fn field_display_is_sorted_and_canonical() {
        let sel = FieldSelector::parse("b==2,a!=1,a=0").expect("parses");
        assert_eq!(sel.to_string(), "a!=1,a=0,b=2");
        let same = FieldSelector::parse("a=0,b=2,a!=1").expect("parses");
        assert_eq!(sel, same);
    }

    /// A label requirement as the generators below build it: key, operator text, values.
    #[derive(Debug, Clone)]
    struct GenRequirement {
        key: String,
        op: &'static str,
        values: Vec<String>,
    }

    impl GenRequirement {
        fn render(&self) -> String {
            match self.op {
                "exists" => self.key.clone(),
                "!" => format!("!{}", self.key),
                "in" | "notin" => {
                    format!("{} {} ( {} )", self.key, self.op, self.values.join(" , "))
                }
                op => format!("{} {op} {}", self.key, self.values.concat()),
            }
        }

        fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
            let have = labels.get(&self.key);
            let listed = |v: &String| self.values.contains(v);
            match self.op {
                "exists" => have.is_some(),
                "!" => have.is_none(),
                "=" | "==" | "in" => have.is_some_and(listed),
                "!=" | "notin" => !have.is_some_and(listed),
                op => {
                    let have = have.and_then(|v| v.parse::<i64>().ok());
                    let want: Option<i64> = self.values.concat().parse().ok();
                    match (have, want) {
                        (Some(h), Some(w)) if op == ">" => h > w,
                        (Some(h), Some(w)) => h < w,
                        _ => false,
                    }
                }
            }
        }
    }

    fn label_key() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            "[a-c]",
            "[A-Za-z0-9][-A-Za-z0-9_.]{0,8}[A-Za-z0-9]",
            Just("in".to_owned()),
            Just("notin".to_owned()),
        ];
        let prefix =
            proptest::option::of("[a-z0-9]{1,4}(\\.[a-z0-9]([-a-z0-9]{0,3}[a-z0-9])?){0,2}");
        (prefix, name).prop_map(|(prefix, name)| match prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name,
        })
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-c0-9]",
            "[A-Za-z0-9][-A-Za-z0-9_.]{0,8}[A-Za-z0-9]",
            Just("in".to_owned()),
        ]
    }

    fn requirement() -> impl Strategy<Value = GenRequirement> {
        let op = prop_oneof![
            Just("exists"),
            Just("!"),
            Just("="),
            Just("=="),
            Just("!="),
            Just("in"),
            Just("notin"),
            Just(">"),
            Just("<"),
        ];
        (
            label_key(),
            op,
            proptest::collection::vec(label_value(), 1..4),
            0u32..20,
        )
            .prop_map(|(key, op, values, number)| {
                let values = match op {
                    "exists" | "!" => Vec::new(),
                    "in" | "notin" => values,
                    ">" | "<" => vec![number.to_string()],
                    _ => values.into_iter().take(1).collect(),
                };
                GenRequirement { key, op, values }
            })
    }

    fn label_set() -> impl Strategy<Value = BTreeMap<String, String>> {
        let value = prop_oneof![label_value(), (0u32..20).prop_map(|n| n.to_string())];
        proptest::collection::btree_map(label_key(), value, 0..6)
    }

    fn to_json(labels: &BTreeMap<String, String>) -> Map<String, Value> {
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    }

    proptest! {
        #[test]
        fn label_parse_never_panics_and_accepted_input_round_trips(
            s in prop_oneof![any::<String>(), "[ab=!(),<>in \t\0-]{0,24}"]
        ) {
            if let Ok(sel) = LabelSelector::parse(&s) {
                let printed = sel.to_string();
                let again = LabelSelector::parse(&printed);
                prop_assert_eq!(again, Ok(sel), "printed as {:?}", printed);
            }
        }

        #[test]
        fn generated_label_selectors_round_trip_and_match_like_their_parts(
            reqs in proptest::collection::vec(requirement(), 0..5),
            set in label_set(),
        ) {
            let text = reqs.iter().map(GenRequirement::render).collect::<Vec<_>>().join(" , ");
            let sel = LabelSelector::parse(&text);
            prop_assert!(sel.is_ok(), "{:?}: {:?}", text, sel);
            let sel = sel.unwrap_or_default();
            prop_assert_eq!(sel.is_empty(), reqs.is_empty());
            let printed = sel.to_string();
            prop_assert_eq!(LabelSelector::parse(&printed), Ok(sel.clone()));
            let expected = reqs.iter().all(|r| r.holds(&set));
            prop_assert_eq!(sel.matches(Some(&to_json(&set))), expected, "{:?} on {:?}", text, set);
        }

        #[test]
        fn field_parse_never_panics_and_accepted_input_round_trips(
            s in prop_oneof![any::<String>(), "[ab=!,\\\\ ]{0,24}"]
        ) {
            if let Ok(sel) = FieldSelector::parse(&s) {
                let printed = sel.to_string();
                prop_assert_eq!(FieldSelector::parse(&printed), Ok(sel), "printed as {:?}", printed);
            }
        }

        #[test]
        fn escaped_field_values_survive_the_round_trip_and_match(
            terms in proptest::collection::vec(("[a-z]{1,3}(\\.[a-z]{1,3}){0,2}", any::<bool>(), any::<String>()), 1..4)
        ) {
            // Distinct top-level names keep one term's path from running through another's value.
            let terms: Vec<(String, bool, String)> = terms
                .into_iter()
                .enumerate()
                .map(|(i, (field, negated, value))| (format!("f{i}.{field}"), negated, value))
                .collect();
            let text = terms
                .iter()
                .map(|(field, negated, value)| {
                    format!("{field}{}{}", if *negated { "!=" } else { "==" }, escape_value(value))
                })
                .collect::<Vec<_>>()
                .join(",");
            let sel = FieldSelector::parse(&text);
            prop_assert!(sel.is_ok(), "{:?}: {:?}", text, sel);
            let sel = sel.unwrap_or_default();
            prop_assert_eq!(sel.fields().count(), terms.len());
            let mut obj = json!({});
            for (field, _, value) in &terms {
                let mut cursor = &mut obj;
                for segment in field.split('.') {
                    cursor = &mut cursor[segment];
                }
                *cursor = Value::String(value.clone());
            }
            prop_assert_eq!(sel.matches(&obj), terms.iter().all(|(_, negated, _)| !negated));
            prop_assert_eq!(FieldSelector::parse(&sel.to_string()), Ok(sel));
        }
    }
}
