//! JSON values to Python objects and back.
//!
//! Handlers see plain Python objects (`dict`, `list`, `str`, `int`, `float`, `bool`, `None`) and may return
//! the same, plus tuples. Anything else is refused with a message that names its type and where it sits in
//! the value, because "not serialisable" alone does not tell a programmer which field to fix.

use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Deepest nesting accepted from Python. Far beyond any real reply; what goes deeper is almost always a
/// container that holds itself, which would otherwise recurse until the stack overflows.
const MAX_DEPTH: usize = 128;

/// Converts a JSON value into the equivalent plain Python object.
pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                // serde_json only produces finite floats, so this never yields NaN in practice.
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Why a Python value could not become JSON, and where in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson {
    /// Where the value sits, e.g. `$["todos"][2]`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.reason, self.path)
    }
}

/// Converts a Python object into JSON, or says which part of it cannot be converted.
pub fn to_json(value: &Bound<'_, PyAny>) -> Result<Value, NotJson> {
    to_json_at(value, 0).map_err(|failure| {
        // The path is built only on failure, from the innermost step out: a successful conversion
        // allocates nothing for it.
        let mut path = String::from("$");
        for step in failure.steps.iter().rev() {
            path.push_str(step);
        }
        NotJson {
            path,
            reason: failure.reason,
        }
    })
}

/// A failed conversion on its way out of the recursion: the reason, and the path steps collected so far
/// (innermost first).
struct Failure {
    reason: String,
    steps: Vec<String>,
}

impl Failure {
    fn new(reason: String) -> Self {
        Failure {
            reason,
            steps: Vec::new(),
        }
    }

    fn within(mut self, step: String) -> Self {
        self.steps.push(step);
        self
    }
}

fn to_json_at(value: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::new(format!(
            "value nested more than {MAX_DEPTH} levels deep (does a container hold itself?)"
        )));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: in Python, bool is a subclass of int.
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if value.cast::<PyInt>().is_ok() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = value.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(Failure::new("int too large for a 64-bit JSON number".to_owned()));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let f = f.value();
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| Failure::new(format!("float {} (JSON has no NaN or infinity)", float_repr(f))));
    }
    if let Ok(s) = value.cast::<PyString>() {
        // to_cow, not to_str: the stable ABI of CPython 3.9 (abi3-py39) has no borrowed UTF-8 view.
        return s
            .to_cow()
            .map(|s| Value::String(s.into_owned()))
            .map_err(|_| Failure::new("str that is not valid UTF-8 (lone surrogate)".to_owned()));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Map::with_capacity(dict.len());
        for (key, item) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(Failure::new(format!(
                    "dict key of type '{}' (JSON keys are str)",
                    type_name(&key)
                )));
            };
            let key = key
                .to_cow()
                .map_err(|_| Failure::new("dict key that is not valid UTF-8".to_owned()))?
                .into_owned();
            let item = to_json_at(&item, depth + 1).map_err(|failure| failure.within(format!("[{key:?}]")))?;
            map.insert(key, item);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = value.cast::<PyList>() {
        return sequence_to_json(list.iter(), list.len(), depth);
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return sequence_to_json(tuple.iter(), tuple.len(), depth);
    }
    Err(Failure::new(format!("value of type '{}'", type_name(value))))
}

fn sequence_to_json<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    len: usize,
    depth: usize,
) -> Result<Value, Failure> {
    let mut array = Vec::with_capacity(len);
    for (index, item) in items.enumerate() {
        array.push(to_json_at(&item, depth + 1).map_err(|failure| failure.within(format!("[{index}]")))?);
    }
    Ok(Value::Array(array))
}

/// A float as Python prints it, for messages: `nan`, `inf`, `-inf`.
fn float_repr(f: f64) -> String {
    match f {
        f if f.is_nan() => "nan".to_owned(),
        f64::INFINITY => "inf".to_owned(),
        f64::NEG_INFINITY => "-inf".to_owned(),
        f => f.to_string(),
    }
}

/// The qualified name of an object's type, for messages.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .qualname()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}
