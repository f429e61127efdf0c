//! Event arguments as they travel: a JSON array text plus binary attachments referenced by
//! placeholders.
//!
//! The text is what goes on the wire, so it is the representation kept: received arguments
//! stay the (shared, uncopied) text the decoder validated, and arguments added with
//! [`Payload::arg`] are serialised straight into it. The `serde_json::Value`s are parsed from
//! the text on first demand ([`Payload::args`], [`Payload::deserialize`], the `Data`
//! extractor), once, on the task that asks: an event handed on unchanged (an echo, a
//! broadcast, an acknowledgement returned as received) is never parsed or serialised again.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::OnceLock;
use volley_core::utf8::Utf8Bytes;

/// Arguments of an event or acknowledgement: a JSON array (binary values replaced by
/// `{"_placeholder":true,"num":i}`) and the attachments in order.
///
/// Equality compares the parsed arguments and the attachments, not the texts.
#[derive(Clone, Default)]
pub struct Payload {
    text: ArgsText,
    /// `text` parsed; filled on first use and cleared when the text changes.
    values: OnceLock<Vec<Value>>,
    attachments: Vec<Bytes>,
}

/// The JSON array text of a [`Payload`]; always a JSON array.
#[derive(Clone)]
pub(crate) enum ArgsText {
    /// Received and validated by the decoder (or checked by [`Payload::from_wire`]).
    Shared(Utf8Bytes),
    /// Written by [`Payload::arg`] / [`Payload::bin`]: compact, `[` … `]`.
    Owned(String),
}

impl Default for ArgsText {
    fn default() -> Self {
        ArgsText::Shared(Utf8Bytes::from_static("[]"))
    }
}

impl ArgsText {
    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ArgsText::Shared(b) => b.as_str(),
            ArgsText::Owned(s) => s,
        }
    }

    /// The text's length in bytes (without a pass over it).
    pub(crate) fn len(&self) -> usize {
        match self {
            ArgsText::Shared(b) => b.len(),
            ArgsText::Owned(s) => s.len(),
        }
    }

    /// The text as a `String` (a copy unless it was built here).
    pub(crate) fn into_string(self) -> String {
        match self {
            ArgsText::Shared(b) => b.as_str().to_owned(),
            ArgsText::Owned(s) => s,
        }
    }

    /// An owned, compact `[…]` text with room for `extra` more bytes, to append to.
    fn into_owned(self, extra: usize) -> String {
        match self {
            ArgsText::Owned(s) => s,
            ArgsText::Shared(b) => {
                let inner = array_inner(b.as_str());
                let mut s = String::with_capacity(inner.len() + extra + 2);
                s.push('[');
                s.push_str(inner);
                s.push(']');
                s
            }
        }
    }
}

impl std::ops::Deref for ArgsText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.args() == other.args() && self.attachments == other.attachments
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("args", &format_args!("{}", self.text.as_str()))
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

/// A value that could not be turned into JSON.
#[derive(Debug)]
pub struct EncodeError(pub serde_json::Error);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode argument: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

impl Payload {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// One argument: `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        // A one-element tuple serialises as `[value]`: the whole text in one allocation.
        let text = serde_json::to_string(&(value,)).map_err(EncodeError)?;
        Ok(Payload {
            text: ArgsText::Owned(text),
            values: OnceLock::new(),
            attachments: Vec::new(),
        })
    }

    /// Appends `value` as the next argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, EncodeError> {
        let json = serde_json::to_string(value).map_err(EncodeError)?;
        self.push_json(&json);
        Ok(self)
    }

    /// Appends a binary argument (sent as an attachment).
    pub fn bin(mut self, data: impl Into<Bytes>) -> Self {
        let num = self.attachments.len();
        self.attachments.push(data.into());
        self.push_json(&placeholder(num).to_string());
        self
    }

    /// Appends one argument's JSON text.
    fn push_json(&mut self, json: &str) {
        let mut text = std::mem::take(&mut self.text).into_owned(json.len() + 1);
        text.pop(); // the closing `]`
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(json);
        text.push(']');
        self.text = ArgsText::Owned(text);
        self.values = OnceLock::new();
    }

    /// Arguments from a JSON text and its attachments, checked: a JSON array is kept as
    /// its arguments, another value as the single argument, text that is not JSON as no
    /// argument.
    pub(crate) fn from_wire(args: &str, attachments: Vec<Bytes>) -> Self {
        let values = match serde_json::from_str::<Value>(args) {
            Ok(Value::Array(a)) => {
                return Payload {
                    text: ArgsText::Shared(Utf8Bytes::from(args)),
                    values: OnceLock::from(a),
                    attachments,
                };
            }
            Ok(other) => vec![other],
            Err(_) => Vec::new(),
        };
        let text = serde_json::to_string(&values).unwrap_or_else(|_| "[]".to_owned());
        Payload {
            text: ArgsText::Owned(text),
            values: OnceLock::from(values),
            attachments,
        }
    }

    /// Arguments as the Socket.IO decoder handed them over: `args` is a JSON array text it
    /// validated, kept as it is and parsed only on demand.
    pub(crate) fn from_decoded(args: Utf8Bytes, attachments: Vec<Bytes>) -> Self {
        Payload {
            text: ArgsText::Shared(args),
            values: OnceLock::new(),
            attachments,
        }
    }

    /// The arguments (binary ones as placeholders), parsed from the text on first use.
    pub fn args(&self) -> &[Value] {
        self.values.get_or_init(|| parse(self.text.as_str()))
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Splits into arguments and attachments.
    pub fn into_parts(self) -> (Vec<Value>, Vec<Bytes>) {
        let values = match self.values.into_inner() {
            Some(values) => values,
            None => parse(self.text.as_str()),
        };
        (values, self.attachments)
    }

    /// The bytes the arguments take on the wire: their JSON text and their attachments
    /// (without a pass over the text).
    pub(crate) fn wire_len(&self) -> usize {
        self.text.len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }

    /// Splits into the JSON array text and the attachments, as the encoder takes them.
    pub(crate) fn into_wire(self) -> (ArgsText, Vec<Bytes>) {
        (self.text, self.attachments)
    }

    /// Splits into the JSON array text as a `String` and the attachments.
    pub(crate) fn into_json(self) -> (String, Vec<Bytes>) {
        (self.text.into_string(), self.attachments)
    }

    /// The arguments as JSON array text (compact, or as received), borrowed.
    pub fn as_json(&self) -> &str {
        self.text.as_str()
    }

    /// The arguments as JSON array text (compact, or as received).
    pub fn json(&self) -> String {
        self.text.as_str().to_owned()
    }

    /// Deserializes the arguments: a single argument is read as `T` first, and no argument
    /// as JSON `null` (so `()` and `Option` take an event without arguments); otherwise (or
    /// if that fails) the whole argument list is read as `T` (a tuple or a `Vec`).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let args = self.args();
        match args {
            [single] => {
                if let Ok(v) = T::deserialize(single) {
                    return Ok(v);
                }
            }
            [] => {
                if let Ok(v) = T::deserialize(&Value::Null) {
                    return Ok(v);
                }
            }
            _ => {}
        }
        T::deserialize(Value::Array(args.to_vec()))
    }
}

/// The values of a JSON array text; a text that is no array (which the constructors rule
/// out) as no values.
fn parse(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => a,
        Ok(other) => vec![other],
        Err(_) => Vec::new(),
    }
}

/// The text between the brackets of a JSON array text, trimmed.
fn array_inner(args: &str) -> &str {
    let trimmed = args.trim();
    trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .map_or(trimmed, str::trim)
}

/// The placeholder that stands for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_text_is_compact_json() {
        let p = Payload::of(&json!({"a": 1}))
            .unwrap()
            .arg("x")
            .unwrap()
            .bin(vec![1u8])
            .arg(&2)
            .unwrap();
        assert_eq!(
            p.as_json(),
            r#"[{"a":1},"x",{"_placeholder":true,"num":0},2]"#
        );
        assert_eq!(
            p.args(),
            [json!({"a": 1}), json!("x"), placeholder(0), json!(2)]
        );
        assert_eq!(Payload::new().as_json(), "[]");
        assert_eq!(Payload::new().arg(&1).unwrap().as_json(), "[1]");
        assert_eq!(
            Payload::new().bin(vec![]).as_json(),
            r#"[{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn received_text_is_kept_and_parsed_on_demand() {
        let p = Payload::from_decoded(Utf8Bytes::from(r#"[ 1, {"b":[true]} ]"#), Vec::new());
        assert_eq!(p.as_json(), r#"[ 1, {"b":[true]} ]"#);
        assert_eq!(p.args(), [json!(1), json!({"b": [true]})]);
        assert_eq!(p.deserialize::<(u8, Value)>().unwrap().0, 1);
        let p = p.arg("c").unwrap();
        assert_eq!(p.as_json(), r#"[1, {"b":[true]},"c"]"#);
        assert_eq!(p.args().len(), 3);
        let empty = Payload::from_decoded(Utf8Bytes::from(" [ ] "), Vec::new());
        assert_eq!(empty.arg(&0).unwrap().as_json(), "[0]");
    }

    #[test]
    fn from_wire_checks_the_text() {
        assert_eq!(Payload::from_wire("[1,2]", Vec::new()).as_json(), "[1,2]");
        assert_eq!(Payload::from_wire("7", Vec::new()).as_json(), "[7]");
        assert_eq!(Payload::from_wire("{", Vec::new()).as_json(), "[]");
        assert_eq!(
            Payload::from_wire("[1,2]", Vec::new()),
            Payload::new().arg(&1).unwrap().arg(&2).unwrap()
        );
    }

    #[test]
    fn deserialize_reads_one_argument_or_the_list() {
        let one = Payload::of("x").unwrap();
        assert_eq!(one.deserialize::<String>().unwrap(), "x");
        let two = Payload::of(&1).unwrap().arg(&2).unwrap();
        assert_eq!(two.deserialize::<(i32, i32)>().unwrap(), (1, 2));
        assert_eq!(Payload::new().deserialize::<Option<u8>>().unwrap(), None);
        let (values, _) = two.into_parts();
        assert_eq!(values, [json!(1), json!(2)]);
    }
}
