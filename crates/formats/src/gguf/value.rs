//! GGUF metadata values.
//!
//! On disk a value is a `u32` type id followed by its payload; an array is
//! an element type id, a `u64` count and that many payloads of one type.
//! Arrays may nest (an array of arrays); each inner array carries its own
//! element type.

use std::fmt;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// Elements share one type (the writer checks; the reader guarantees).
    Array(Vec<Value>),
}

// GGUF value type ids (`enum gguf_type`).
pub(crate) const TYPE_U8: u32 = 0;
pub(crate) const TYPE_I8: u32 = 1;
pub(crate) const TYPE_U16: u32 = 2;
pub(crate) const TYPE_I16: u32 = 3;
pub(crate) const TYPE_U32: u32 = 4;
pub(crate) const TYPE_I32: u32 = 5;
pub(crate) const TYPE_F32: u32 = 6;
pub(crate) const TYPE_BOOL: u32 = 7;
pub(crate) const TYPE_STRING: u32 = 8;
pub(crate) const TYPE_ARRAY: u32 = 9;
pub(crate) const TYPE_U64: u32 = 10;
pub(crate) const TYPE_I64: u32 = 11;
pub(crate) const TYPE_F64: u32 = 12;

/// The smallest encoding of a value of type `type_id` (a string is at least
/// its length prefix, an array its element type and count), or `None` for an
/// unknown type id.
pub(crate) fn min_encoded_len(type_id: u32) -> Option<u64> {
    Some(match type_id {
        TYPE_U8 | TYPE_I8 | TYPE_BOOL => 1,
        TYPE_U16 | TYPE_I16 => 2,
        TYPE_U32 | TYPE_I32 | TYPE_F32 => 4,
        TYPE_U64 | TYPE_I64 | TYPE_F64 | TYPE_STRING => 8,
        TYPE_ARRAY => 12,
        _ => return None,
    })
}

impl Value {
    /// The GGUF type id of this value.
    pub(crate) fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => TYPE_U8,
            Value::I8(_) => TYPE_I8,
            Value::U16(_) => TYPE_U16,
            Value::I16(_) => TYPE_I16,
            Value::U32(_) => TYPE_U32,
            Value::I32(_) => TYPE_I32,
            Value::U64(_) => TYPE_U64,
            Value::I64(_) => TYPE_I64,
            Value::F32(_) => TYPE_F32,
            Value::F64(_) => TYPE_F64,
            Value::Bool(_) => TYPE_BOOL,
            Value::String(_) => TYPE_STRING,
            Value::Array(_) => TYPE_ARRAY,
        }
    }

    /// Any non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any float or integer (large 64-bit integers lose precision).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of the type: "u8", "i32", "f32", "bool", "string", "array", ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// Short human-readable form (arrays show their length and first elements),
/// for `memwall inspect` and error messages.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(items) => {
                write!(f, "[{} items: ", items.len())?;
                for (i, item) in items.iter().take(4).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > 4 {
                    f.write_str(", ...")?;
                }
                f.write_str("]")
            }
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v)
            }
        })*
    };
}

from_scalar!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String,
);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Value::I32(-1).as_u64(), None);
        assert_eq!(Value::I32(7).as_u64(), Some(7));
        assert_eq!(Value::U64(u64::MAX).as_i64(), None);
        assert_eq!(Value::U8(3).as_i64(), Some(3));
        assert_eq!(Value::U16(2).as_f64(), Some(2.0));
        assert_eq!(Value::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(Value::F32(0.5).as_u64(), None);
        assert_eq!(Value::Bool(true).as_bool(), Some(true));
        assert_eq!(Value::U8(1).as_bool(), None);
        assert_eq!(Value::from("a").as_str(), Some("a"));
        assert_eq!(Value::from(vec![1u32, 2]).as_array().map(|a| a.len()), Some(2));
        assert_eq!(Value::from(vec![1u32]).type_name(), "array");
    }
}
