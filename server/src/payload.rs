//! Event arguments as they travel: a JSON array text plus binary attachments referenced by
//! placeholders.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// Arguments of an event or acknowledgement: a JSON array (binary values replaced by
/// `{"_placeholder":true,"num":i}`) and the attachments in order.
#[derive(Clone, Default, PartialEq)]
pub struct Payload {
    args: Vec<Value>,
    attachments: Vec<Bytes>,
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("args", &self.args)
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
        Payload::new().arg(value)
    }

    /// Appends `value` as the next argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, EncodeError> {
        self.args
            .push(serde_json::to_value(value).map_err(EncodeError)?);
        Ok(self)
    }

    /// Appends a binary argument (sent as an attachment).
    pub fn bin(mut self, data: impl Into<Bytes>) -> Self {
        let num = self.attachments.len();
        self.attachments.push(data.into());
        self.args.push(placeholder(num));
        self
    }

    /// Arguments from a JSON array text and its attachments, as received.
    pub(crate) fn from_wire(args: &str, attachments: Vec<Bytes>) -> Self {
        let args = match serde_json::from_str::<Value>(args) {
            Ok(Value::Array(a)) => a,
            Ok(other) => vec![other],
            Err(_) => Vec::new(),
        };
        Payload { args, attachments }
    }

    /// The arguments (binary ones as placeholders).
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Splits into arguments and attachments.
    pub fn into_parts(self) -> (Vec<Value>, Vec<Bytes>) {
        (self.args, self.attachments)
    }

    /// The arguments as compact JSON array text.
    pub fn json(&self) -> String {
        serde_json::to_string(&self.args).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Deserializes the arguments: a single argument is read as `T` first, and no argument
    /// as JSON `null` (so `()` and `Option` take an event without arguments); otherwise (or
    /// if that fails) the whole argument list is read as `T` (a tuple or a `Vec`).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.args.as_slice() {
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
        T::deserialize(Value::Array(self.args.clone()))
    }
}

/// The placeholder that stands for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}
