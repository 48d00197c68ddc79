//! Typed, validating access to the fields of a JSON object, with errors that name the field.

use miniserde::json::{self, Number, Object, Value};
use std::fmt;

/// Why a body was refused: either it is not JSON at all, or one field is wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum WireError {
    InvalidJson(String),
    InvalidField { field: String, reason: String },
}

/// The largest float every whole number up to which is exact (2^53).
const MAX_EXACT_F64: f64 = 9_007_199_254_740_992.0;

impl WireError {
    pub fn field(field: &str, reason: impl Into<String>) -> WireError {
        WireError::InvalidField { field: field.to_owned(), reason: reason.into() }
    }

    /// The snake_case code an HTTP error carries for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::InvalidJson(_) => "invalid_json",
            WireError::InvalidField { .. } => "invalid_field",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::InvalidJson(reason) => f.write_str(reason),
            WireError::InvalidField { field, reason } => write!(f, "field `{field}` {reason}"),
        }
    }
}

impl std::error::Error for WireError {}

/// The longest string any field may hold, unless the field says otherwise.
pub const MAX_STRING: usize = 256;
/// The most items any list field may hold.
pub const MAX_ITEMS: usize = 64;

/// A parsed JSON object whose fields are read one by one with a clear error for each.
pub struct Fields {
    object: Object,
}

impl Fields {
    /// Parses `body` as a JSON object.
    pub fn parse(body: &str) -> Result<Fields, WireError> {
        match json::from_str::<Value>(body) {
            Ok(Value::Object(object)) => Ok(Fields { object }),
            Ok(_) => Err(WireError::InvalidJson("the body must be a JSON object".into())),
            Err(_) => Err(WireError::InvalidJson(
                "the body is not valid JSON; send a JSON object with Content-Type: application/json".into(),
            )),
        }
    }

    /// The field's value, treating `null` as absent.
    fn get(&self, name: &str) -> Option<&Value> {
        match self.object.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    fn required<T>(&self, name: &str, value: Option<T>) -> Result<T, WireError> {
        value.ok_or_else(|| WireError::field(name, "is required"))
    }

    pub fn opt_str(&self, name: &str, max_len: usize) -> Result<Option<String>, WireError> {
        self.get(name).map(|value| string(name, value, max_len)).transpose()
    }

    pub fn str(&self, name: &str, max_len: usize) -> Result<String, WireError> {
        let value = self.opt_str(name, max_len)?;
        self.required(name, value)
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(WireError::field(name, "must be true or false")),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, WireError> {
        let value = self.opt_bool(name)?;
        self.required(name, value)
    }

    /// A whole number, 0 or more, written as an integer or as a float with no fraction.
    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(Number::U64(n))) => Ok(Some(*n)),
            // `30.0` (what Python's json writes for a float) and `-0` are whole numbers too.
            Some(Value::Number(Number::I64(0))) => Ok(Some(0)),
            Some(Value::Number(Number::F64(x))) if x.fract() == 0.0 && (0.0..=MAX_EXACT_F64).contains(x) => {
                Ok(Some(*x as u64))
            }
            Some(_) => Err(WireError::field(name, "must be a whole number, 0 or more")),
        }
    }

    pub fn opt_f64_list(&self, name: &str, len: usize) -> Result<Option<Vec<f64>>, WireError> {
        let Some(items) = self.opt_list(name, len)? else {
            return Ok(None);
        };
        if items.len() != len {
            return Err(WireError::field(name, format!("must hold exactly {len} numbers")));
        }
        items
            .iter()
            .map(|item| match item {
                Value::Number(Number::U64(n)) => Ok(*n as f64),
                Value::Number(Number::I64(n)) => Ok(*n as f64),
                Value::Number(Number::F64(n)) if n.is_finite() => Ok(*n),
                _ => Err(WireError::field(name, "must hold only numbers")),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    pub fn opt_str_list(&self, name: &str, max_len: usize) -> Result<Option<Vec<String>>, WireError> {
        let Some(items) = self.opt_list(name, MAX_ITEMS)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(_) => string(name, item, max_len),
                _ => Err(WireError::field(name, "must hold only strings")),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Whether the object has `name` at all (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        self.object.contains_key(name)
    }

    /// An object of at most `max_entries` keys (each at most `key_len` bytes) whose values
    /// are strings, numbers or booleans (kept as text, at most `value_len` bytes); `null`
    /// values are left out. Nested objects and lists are refused: they would be unbounded.
    pub fn opt_scalar_map(
        &self,
        name: &str,
        max_entries: usize,
        key_len: usize,
        value_len: usize,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, WireError> {
        let object = match self.get(name) {
            None => return Ok(None),
            Some(Value::Object(object)) if object.len() <= max_entries => object,
            Some(Value::Object(_)) => {
                return Err(WireError::field(name, format!("may hold at most {max_entries} entries")));
            }
            Some(_) => return Err(WireError::field(name, "must be a JSON object")),
        };
        let mut out = std::collections::BTreeMap::new();
        for (key, value) in object.iter() {
            if key.is_empty() || key.len() > key_len {
                return Err(WireError::field(name, format!("keys must be 1 to {key_len} bytes")));
            }
            let text = match value {
                Value::Null => continue,
                Value::String(_) => string(name, value, value_len)?,
                Value::Bool(b) => b.to_string(),
                Value::Number(Number::U64(n)) => n.to_string(),
                Value::Number(Number::I64(n)) => n.to_string(),
                Value::Number(Number::F64(n)) => n.to_string(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(WireError::field(name, "values must be strings, numbers or booleans"));
                }
            };
            if text.len() > value_len {
                return Err(WireError::field(name, format!("values must be at most {value_len} bytes")));
            }
            out.insert(printable(key), text);
        }
        Ok(Some(out))
    }

    /// A list of JSON objects, each read with its own [`Fields`].
    pub fn opt_object_list(&self, name: &str) -> Result<Option<Vec<Fields>>, WireError> {
        let Some(items) = self.opt_list(name, MAX_ITEMS)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| match item {
                Value::Object(object) => Ok(Fields { object: object.clone() }),
                _ => Err(WireError::field(name, "must hold only JSON objects")),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn opt_list(&self, name: &str, max_items: usize) -> Result<Option<&Vec<Value>>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) if items.len() <= max_items => Ok(Some(items)),
            Some(Value::Array(_)) => Err(WireError::field(name, format!("may hold at most {max_items} items"))),
            Some(_) => Err(WireError::field(name, "must be a JSON array")),
        }
    }
}

fn string(name: &str, value: &Value, max_len: usize) -> Result<String, WireError> {
    match value {
        Value::String(s) if s.len() <= max_len => Ok(printable(s)),
        Value::String(_) => Err(WireError::field(name, format!("is longer than {max_len} bytes"))),
        _ => Err(WireError::field(name, "must be a string")),
    }
}

/// Whether `c` reorders or hides text: bidirectional controls, zero-width characters
/// and the byte-order mark. A name holding them can look like another's.
pub fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` without what could make it pass for other text: control characters become
/// spaces, bidirectional and zero-width characters go.
pub fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() || is_deceptive(c)) {
        return text.to_owned();
    }
    text.chars().filter(|c| !is_deceptive(*c)).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_lose_control_and_bidi_characters() {
        assert_eq!(printable("web-1"), "web-1");
        assert_eq!(printable("web\u{202E}1-bew"), "web1-bew");
        assert_eq!(printable("a\u{200B}b\u{FEFF}"), "ab");
        assert_eq!(printable("line\nbreak\u{7}"), "line break ");
        let f = Fields::parse(r#"{"hostname":"pi\u202e\u0000x"}"#).unwrap();
        assert_eq!(f.str("hostname", 64).unwrap(), "pi x");
    }

    fn check_err(body: &str, read: impl Fn(&Fields) -> Result<(), WireError>, expected: &str) {
        let got = Fields::parse(body).and_then(|fields| read(&fields)).unwrap_err().to_string();
        assert_eq!(got, expected, "body: {body}");
    }

    #[test]
    fn errors_name_the_field() {
        check_err(r#"{}"#, |f| f.str("hostname", 10).map(drop), "field `hostname` is required");
        check_err(r#"{"a":null}"#, |f| f.bool("a").map(drop), "field `a` is required");
        check_err(r#"{"a":"yes"}"#, |f| f.bool("a").map(drop), "field `a` must be true or false");
        check_err(r#"{"a":-1}"#, |f| f.opt_u64("a").map(drop), "field `a` must be a whole number, 0 or more");
        check_err(r#"{"a":1.5}"#, |f| f.opt_u64("a").map(drop), "field `a` must be a whole number, 0 or more");
        check_err(r#"{"a":-1.0}"#, |f| f.opt_u64("a").map(drop), "field `a` must be a whole number, 0 or more");
        check_err(r#"{"a":1e300}"#, |f| f.opt_u64("a").map(drop), "field `a` must be a whole number, 0 or more");
        for (body, n) in [(r#"{"a":30.0}"#, 30), (r#"{"a":-0}"#, 0), (r#"{"a":-0.0}"#, 0), (r#"{"a":7}"#, 7)] {
            assert_eq!(Fields::parse(body).unwrap().opt_u64("a").unwrap(), Some(n), "{body}");
        }
        check_err(r#"{"a":"xxxx"}"#, |f| f.str("a", 3).map(drop), "field `a` is longer than 3 bytes");
        check_err(r#"{"a":[1,2]}"#, |f| f.opt_f64_list("a", 3).map(drop), "field `a` must hold exactly 3 numbers");
        check_err(r#"{"a":[1]}"#, |f| f.opt_str_list("a", 9).map(drop), "field `a` must hold only strings");
        check_err(r#"{"a":{}}"#, |f| f.opt_str_list("a", 9).map(drop), "field `a` must be a JSON array");
    }

    #[test]
    fn only_objects_are_bodies() {
        for body in ["", "[]", "1", "{", "{\"a\":}", "\u{0}"] {
            let err = Fields::parse(body).err().unwrap();
            assert_eq!(err.code(), "invalid_json", "body: {body:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let body = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        // miniserde parses without recursion, so this is a body like any other: an object
        // whose `a` is no list of strings, answered with an error naming `a`, not a crash.
        let fields = Fields::parse(&body).unwrap();
        let err = fields.opt_str_list("a", 9).unwrap_err();
        assert_eq!(err.to_string(), "field `a` must hold only strings");
    }
}
