//! Model data <-> MongoDB document: one pass each way.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/mapping.py` (same results, same errors).
//!
//! `map_to_doc` turns a `model_dump()` result into the document the driver encodes
//! (`_id`, `_version`, renames, Decimal -> Decimal128, UUID -> Binary subtype 4,
//! datetimes -> aware UTC, date -> UTC midnight, Enum -> value, set/tuple -> list);
//! `map_from_doc` reverses it for `model_validate`. BSON encoding itself stays with
//! the driver's C codec. Paths are built only when an error is raised.
use pyo3::intern;
use pyo3::PyTypeInfo;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

use crate::errors::invalid_document;
use crate::keys::{bad_key_error, checked_key, child_path, display_path, index_path, key_problem, too_deep_error, MAX_DEPTH};

// --- cached Python objects ----------------------------------------------------------
struct Cache {
    decimal: Py<PyType>,
    uuid: Py<PyType>,
    datetime: Py<PyType>,
    date: Py<PyType>,
    enum_: Py<PyType>,
    decimal128: Py<PyType>,
    binary: Py<PyType>,
    base_model: Py<PyType>,
    mapping: Py<PyType>,
    seqs: Py<PyTuple>,
    byteslike: Py<PyTuple>,
    passthrough: Py<PyTuple>,
    bytes_new: PyObject,
    utc: PyObject,
}

static CACHE: GILOnceCell<Cache> = GILOnceCell::new();

fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py.import(module)?.getattr(name)?.downcast_into::<PyType>()?.unbind())
}

fn cache(py: Python<'_>) -> PyResult<&'static Cache> {
    CACHE.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let tuple_of = |items: Vec<Py<PyType>>| -> PyResult<Py<PyTuple>> {
            Ok(PyTuple::new(py, items.iter().map(|t| t.bind(py)))?.unbind())
        };
        let passthrough = tuple_of(vec![
            class(py, "bson.objectid", "ObjectId")?,
            class(py, "bson.decimal128", "Decimal128")?,
            class(py, "bson.binary", "Binary")?,
            class(py, "builtins", "bytes")?,
            class(py, "bson.regex", "Regex")?,
            class(py, "re", "Pattern")?,
            class(py, "bson.timestamp", "Timestamp")?,
            class(py, "bson.min_key", "MinKey")?,
            class(py, "bson.max_key", "MaxKey")?,
            class(py, "bson.code", "Code")?,
            class(py, "bson.dbref", "DBRef")?,
            class(py, "bson.int64", "Int64")?,
        ])?;
        Ok(Cache {
            decimal: class(py, "decimal", "Decimal")?,
            uuid: class(py, "uuid", "UUID")?,
            datetime: class(py, "datetime", "datetime")?,
            date: class(py, "datetime", "date")?,
            enum_: class(py, "enum", "Enum")?,
            decimal128: class(py, "bson.decimal128", "Decimal128")?,
            binary: class(py, "bson.binary", "Binary")?,
            base_model: class(py, "pydantic", "BaseModel")?,
            mapping: class(py, "collections.abc", "Mapping")?,
            seqs: tuple_of(vec![
                class(py, "builtins", "list")?,
                class(py, "builtins", "tuple")?,
                class(py, "builtins", "set")?,
                class(py, "builtins", "frozenset")?,
            ])?,
            byteslike: tuple_of(vec![class(py, "builtins", "bytearray")?, class(py, "builtins", "memoryview")?])?,
            passthrough,
            bytes_new: builtins.getattr("bytes")?.getattr("__new__")?.unbind(),
            utc: py.import("datetime")?.getattr("timezone")?.getattr("utc")?.unbind(),
        })
    })
}

// --- lazy paths ------------------------------------------------------------------------
#[derive(Clone, Copy)]
enum Seg<'a, 'py> {
    Root,
    Key(&'a str),
    Obj(&'a Bound<'py, PyAny>),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Path<'a, 'py> {
    parent: Option<&'a Path<'a, 'py>>,
    seg: Seg<'a, 'py>,
}

impl<'a, 'py> Path<'a, 'py> {
    const ROOT: Path<'static, 'static> = Path { parent: None, seg: Seg::Root };

    fn key(&'a self, key: &'a str) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Key(key) }
    }

    fn obj(&'a self, key: &'a Bound<'py, PyAny>) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Obj(key) }
    }

    fn index(&'a self, index: usize) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Index(index) }
    }

    fn render(&self) -> String {
        let parent = self.parent.map(|p| p.render()).unwrap_or_default();
        match self.seg {
            Seg::Root => parent,
            Seg::Key(k) => child_path(&parent, k),
            Seg::Obj(k) => child_path(&parent, &k.str().map(|s| s.to_string()).unwrap_or_default()),
            Seg::Index(i) => index_path(&parent, i),
        }
    }
}

fn too_deep(py: Python<'_>, path: &Path<'_, '_>) -> PyErr {
    too_deep_error(py, &path.render())
}

// --- Decimal <-> Decimal128 -------------------------------------------------------------
const MAX_DIGITS: i128 = 34;
const EXP_MIN: i128 = -6176;
const EXP_MAX: i128 = 6111;
const EXP_BIAS: i128 = 6176;
const SIGN: u64 = 0x8000_0000_0000_0000;
const INF: u64 = 0x7800_0000_0000_0000;
const NAN: u64 = 0x7C00_0000_0000_0000;
const SNAN: u64 = 0x7E00_0000_0000_0000;
const COMBINATION_11: u64 = 0x6000_0000_0000_0000;
const MAX_COEFFICIENT: u128 = 10u128.pow(34) - 1;

enum BidError {
    Inexact,
    NanPayload,
}

/// BID words of the Decimal whose `str()` is `text`, or why it cannot be stored exactly.
fn bid_of_decimal_text(text: &str) -> Result<(u64, u64), BidError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let sign = if negative { SIGN } else { 0 };
    if body == "Infinity" {
        return Ok((sign | INF, 0));
    }
    if let Some(payload) = body.strip_prefix("sNaN") {
        return if payload.is_empty() { Ok((sign | SNAN, 0)) } else { Err(BidError::NanPayload) };
    }
    if let Some(payload) = body.strip_prefix("NaN") {
        return if payload.is_empty() { Ok((sign | NAN, 0)) } else { Err(BidError::NanPayload) };
    }
    let (mantissa, exp_text) = match body.find(['E', 'e']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let mut exponent: i128 = match exp_text {
        Some(t) => t.parse::<i128>().map_err(|_| BidError::Inexact)?,
        None => 0,
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, ""),
    };
    exponent -= frac_part.len() as i128;
    // significant digits without leading zeros, over the two parts
    let digits = || int_part.bytes().chain(frac_part.bytes());
    let leading = digits().take_while(|&b| b == b'0').count();
    let total = int_part.len() + frac_part.len();
    let length = (total - leading) as i128;
    let (coefficient, exp) = if length == 0 {
        (0u128, exponent.clamp(EXP_MIN, EXP_MAX))
    } else {
        let trailing = digits().rev().take_while(|&b| b == b'0').count() as i128;
        let exp = exponent.max(exponent + length - MAX_DIGITS).max(EXP_MIN).min(EXP_MAX);
        let shift = exp - exponent;
        if shift > trailing || length - shift > MAX_DIGITS {
            return Err(BidError::Inexact);
        }
        let keep = if shift >= 0 { (length - shift) as usize } else { length as usize };
        let mut coefficient: u128 = 0;
        for b in digits().skip(leading).take(keep) {
            coefficient = coefficient * 10 + u128::from(b - b'0');
        }
        if shift < 0 {
            coefficient *= 10u128.pow((-shift) as u32);
        }
        (coefficient, exp)
    };
    let high = sign | (((exp + EXP_BIAS) as u64) << 49) | ((coefficient >> 64) as u64);
    Ok((high, coefficient as u64))
}

/// The `str()` of the exact Decimal of BID words (non-canonical coefficients read as 0).
fn decimal_text_of_bid(high: u64, low: u64) -> String {
    let sign = if high & SIGN != 0 { "-" } else { "" };
    if high & SNAN == SNAN {
        return format!("{sign}sNaN");
    }
    if high & NAN == NAN {
        return format!("{sign}NaN");
    }
    if high & INF == INF {
        return format!("{sign}Infinity");
    }
    let (coefficient, exponent) = if high & COMBINATION_11 == COMBINATION_11 {
        (0u128, ((high >> 47) & 0x3FFF) as i128 - EXP_BIAS)
    } else {
        let c = (u128::from(high & 0x1_FFFF_FFFF_FFFF) << 64) | u128::from(low);
        (if c > MAX_COEFFICIENT { 0 } else { c }, ((high >> 49) & 0x3FFF) as i128 - EXP_BIAS)
    };
    format!("{sign}{coefficient}E{exponent}")
}

fn to_decimal128<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>) -> PyResult<Bound<'py, PyAny>> {
    let text = value.str()?;
    let text = text.to_str()?;
    match bid_of_decimal_text(text) {
        Ok((high, low)) => c.decimal128.bind(py).call1(((high, low),)),
        Err(BidError::Inexact) => Err(invalid_document(
            py,
            format!(
                "Decimal {text} at '{}' cannot be stored exactly as Decimal128 (at most 34 significant digits, exponent -6176..6111); round it with quantize() or store it as a string",
                display_path(&path.render())
            ),
        )),
        Err(BidError::NanPayload) => Err(invalid_document(
            py,
            format!(
                "Decimal {text} at '{}' is a NaN with a payload, which Decimal128 cannot store; use a plain NaN or a string",
                display_path(&path.render())
            ),
        )),
    }
}

fn from_decimal128<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let high: u64 = value.getattr(intern!(py, "_Decimal128__high"))?.extract()?;
    let low: u64 = value.getattr(intern!(py, "_Decimal128__low"))?.extract()?;
    c.decimal.bind(py).call1((decimal_text_of_bid(high, low),))
}

// --- shared value rules ----------------------------------------------------------------
fn utc_datetime<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let utc = c.utc.bind(py);
    let tz = value.getattr(intern!(py, "tzinfo"))?;
    if tz.is_none() {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "tzinfo"), utc)?;
        value.call_method(intern!(py, "replace"), (), Some(&kwargs))
    } else if tz.is(utc) {
        Ok(value.clone())
    } else {
        value.call_method1(intern!(py, "astimezone"), (utc,))
    }
}

fn int_in_range<'py>(py: Python<'py>, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>) -> PyResult<Bound<'py, PyAny>> {
    if value.extract::<i64>().is_ok() {
        Ok(value.clone())
    } else {
        Err(invalid_document(
            py,
            format!(
                "integer at '{}' does not fit in 64 bits (MongoDB's largest integer); store it as a Decimal or a string",
                display_path(&path.render())
            ),
        ))
    }
}

// --- model data -> document ------------------------------------------------------------
fn seq_to_doc<'py>(py: Python<'py>, c: &Cache, items: &Bound<'py, PyAny>, path: &Path<'_, 'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let out = PyList::empty(py);
    if let Ok(list) = items.downcast::<PyList>() {
        for (i, item) in list.iter().enumerate() {
            out.append(to_doc_value(py, c, &item, &path.index(i), depth + 1)?)?;
        }
    } else {
        for (i, item) in items.try_iter()?.enumerate() {
            out.append(to_doc_value(py, c, &item?, &path.index(i), depth + 1)?)?;
        }
    }
    Ok(out.into_any())
}

fn checked<'a, 'py>(py: Python<'py>, key: &'a Bound<'py, PyAny>, parent: &Path<'_, 'py>) -> PyResult<&'a str> {
    let Ok(s) = key.downcast::<PyString>() else {
        return Err(checked_key(py, key, &parent.render()).err().unwrap_or_else(|| invalid_document(py, "bad key".into())));
    };
    let text = s.to_str()?;
    if let Some(problem) = key_problem(text) {
        return Err(bad_key_error(py, &child_path(&parent.render(), text), problem));
    }
    Ok(text)
}

fn dict_to_doc<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyDict>, path: &Path<'_, 'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let out = PyDict::new(py);
    for (key, child) in value.iter() {
        let text = checked(py, &key, path)?;
        out.set_item(&key, to_doc_value(py, c, &child, &path.key(text), depth + 1)?)?;
    }
    Ok(out.into_any())
}

fn unsupported(py: Python<'_>, value: &Bound<'_, PyAny>, path: &Path<'_, '_>) -> PyErr {
    let name = value
        .get_type()
        .getattr("__qualname__")
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "?".into());
    invalid_document(
        py,
        format!(
            "value of type {name} at '{}' cannot be stored in MongoDB; convert it to a supported type (str, int, float, bool, Decimal, datetime, date, UUID, Enum, bytes, list, dict, nested model) with a field serializer",
            display_path(&path.render())
        ),
    )
}

fn to_doc_value<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Ok(value.clone());
    }
    if value.is_exact_instance_of::<PyInt>() {
        return int_in_range(py, value, path);
    }
    if let Ok(dict) = value.downcast_exact::<PyDict>() {
        return dict_to_doc(py, c, dict, path, depth);
    }
    if value.is_exact_instance_of::<PyList>() {
        return seq_to_doc(py, c, value, path, depth);
    }
    if value.is_instance(c.enum_.bind(py))? {
        let inner = value.getattr(intern!(py, "_value_"))?;
        return to_doc_value(py, c, &inner, path, depth);
    }
    if value.is_instance(c.decimal.bind(py))? {
        return to_decimal128(py, c, value, path);
    }
    if value.is_instance(c.datetime.bind(py))? {
        return utc_datetime(py, c, value);
    }
    if value.is_instance(c.date.bind(py))? {
        let y = value.getattr(intern!(py, "year"))?;
        let m = value.getattr(intern!(py, "month"))?;
        let d = value.getattr(intern!(py, "day"))?;
        return c.datetime.bind(py).call1((y, m, d, 0, 0, 0, 0, c.utc.bind(py)));
    }
    if value.is_instance(c.uuid.bind(py))? {
        let n: u128 = value.getattr(intern!(py, "int"))?.extract()?;
        let raw = PyBytes::new(py, &n.to_be_bytes());
        let binary = c.bytes_new.bind(py).call1((c.binary.bind(py), raw))?;
        binary.setattr(intern!(py, "_Binary__subtype"), 4)?;
        return Ok(binary);
    }
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyString>() {
        return Ok(value.clone());
    }
    if value.is_instance_of::<PyInt>() {
        return int_in_range(py, value, path);
    }
    if let Ok(dict) = value.downcast::<PyDict>() {
        return dict_to_doc(py, c, dict, path, depth);
    }
    if value.is_instance(c.seqs.bind(py).as_any())? {
        return seq_to_doc(py, c, value, path, depth);
    }
    if value.is_instance(c.base_model.bind(py))? {
        let dumped = value.call_method0(intern!(py, "model_dump"))?;
        let dict = dumped.downcast::<PyDict>()?;
        return dict_to_doc(py, c, dict, path, depth);
    }
    if value.is_instance(c.byteslike.bind(py).as_any())? {
        return Ok(PyBytes::type_object(py).call1((value,))?);
    }
    if value.is_instance(c.passthrough.bind(py).as_any())? {
        return Ok(value.clone());
    }
    Err(unsupported(py, value, path))
}

/// The MongoDB document of `data` (a `model_dump()` result); see the pure twin.
#[pyfunction]
#[pyo3(signature = (data, id_field, field_map, versioned))]
pub fn map_to_doc<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    id_field: &Bound<'py, PyString>,
    field_map: Option<&Bound<'py, PyDict>>,
    versioned: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let c = cache(py)?;
    let Ok(data) = data.downcast::<PyDict>() else {
        let name: String = data.get_type().getattr("__qualname__")?.extract()?;
        return Err(invalid_document(py, format!("a model's data must be a dict, got {name}; pass model_dump()")));
    };
    let root = Path::ROOT;
    let doc = PyDict::new(py);
    let id_key = intern!(py, "_id");
    let version_key = intern!(py, "version");
    let version_doc_key = intern!(py, "_version");
    if let Some(ident) = data.get_item(id_field)? {
        if !ident.is_none() {
            doc.set_item(id_key, to_doc_value(py, c, &ident, &root.key("_id"), 1)?)?;
        }
    }
    if versioned {
        if let Some(version) = data.get_item(version_key)? {
            doc.set_item(version_doc_key, to_doc_value(py, c, &version, &root.key("_version"), 1)?)?;
        }
    }
    let id_text = id_field.to_str()?;
    for (key, value) in data.iter() {
        if let Ok(k) = key.downcast::<PyString>() {
            let k = k.to_str()?;
            if k == id_text || (versioned && k == "version") {
                continue;
            }
        }
        let key = match field_map {
            Some(map) => map.get_item(&key)?.unwrap_or(key),
            None => key,
        };
        let text = checked(py, &key, &root)?;
        if doc.contains(&key)? {
            return Err(invalid_document(
                py,
                format!(
                    "document field '{text}' is written twice; check field_map for two fields mapped to the same name or a field named like '_id'/'_version'"
                ),
            ));
        }
        doc.set_item(&key, to_doc_value(py, c, &value, &root.key(text), 1)?)?;
    }
    Ok(doc)
}

// --- document -> model data -------------------------------------------------------------
fn map_from_items<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let out = PyDict::new(py);
    if let Ok(dict) = value.downcast::<PyDict>() {
        for (k, v) in dict.iter() {
            out.set_item(&k, from_doc_value(py, c, &v, &path.obj(&k), depth + 1)?)?;
        }
    } else {
        for pair in value.call_method0(intern!(py, "items"))?.try_iter()? {
            let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair?.extract()?;
            out.set_item(&k, from_doc_value(py, c, &v, &path.obj(&k), depth + 1)?)?;
        }
    }
    Ok(out.into_any())
}

fn map_from_seq<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let out = PyList::empty(py);
    for (i, item) in value.try_iter()?.enumerate() {
        out.append(from_doc_value(py, c, &item?, &path.index(i), depth + 1)?)?;
    }
    Ok(out.into_any())
}

fn binary_value<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let subtype: i64 = value.getattr(intern!(py, "subtype"))?.extract()?;
    if subtype == 4 {
        let raw = value.downcast::<PyBytes>()?.as_bytes();
        if raw.len() == 16 {
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "bytes"), PyBytes::new(py, raw))?;
            return c.uuid.bind(py).call((), Some(&kwargs));
        }
    } else if subtype == 0 {
        return Ok(PyBytes::new(py, value.downcast::<PyBytes>()?.as_bytes()).into_any());
    }
    Ok(value.clone())
}

fn from_doc_value<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Ok(value.clone());
    }
    let ty = value.get_type();
    if value.is_exact_instance_of::<PyDict>() {
        return map_from_items(py, c, value, path, depth);
    }
    if value.is_exact_instance_of::<PyList>() {
        return map_from_seq(py, c, value, path, depth);
    }
    if ty.is(c.decimal128.bind(py)) {
        return from_decimal128(py, c, value);
    }
    if ty.is(c.datetime.bind(py)) {
        return utc_datetime(py, c, value);
    }
    if ty.is(c.binary.bind(py)) {
        return binary_value(py, c, value);
    }
    if value.is_instance_of::<PyDict>() {
        return map_from_items(py, c, value, path, depth);
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return map_from_seq(py, c, value, path, depth);
    }
    if value.is_instance(c.decimal128.bind(py))? {
        return from_decimal128(py, c, value);
    }
    if value.is_instance(c.datetime.bind(py))? {
        return utc_datetime(py, c, value);
    }
    Ok(value.clone())
}

/// The model data of a stored document, ready for `model_validate`; see the pure twin.
#[pyfunction]
#[pyo3(signature = (doc, id_field, reverse_map, versioned))]
pub fn map_from_doc<'py>(
    py: Python<'py>,
    doc: &Bound<'py, PyAny>,
    id_field: &Bound<'py, PyString>,
    reverse_map: Option<&Bound<'py, PyDict>>,
    versioned: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let c = cache(py)?;
    let pairs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = if let Ok(dict) = doc.downcast::<PyDict>() {
        dict.iter().collect()
    } else if doc.is_instance(c.mapping.bind(py))? {
        let mut pairs = Vec::new();
        for pair in doc.call_method0(intern!(py, "items"))?.try_iter()? {
            pairs.push(pair?.extract()?);
        }
        pairs
    } else {
        let name: String = doc.get_type().getattr("__qualname__")?.extract()?;
        return Err(invalid_document(py, format!("a stored document must be a mapping, got {name}")));
    };
    let root = Path::ROOT;
    let data = PyDict::new(py);
    let mut saw_version = false;
    for (key, value) in pairs.iter() {
        let text = key.downcast::<PyString>().ok().map(|s| s.to_str()).transpose()?;
        let name: Bound<'py, PyAny> = match text {
            Some("_id") => id_field.clone().into_any(),
            Some("_version") if versioned => {
                saw_version = true;
                intern!(py, "version").clone().into_any()
            }
            _ => match reverse_map {
                Some(map) => map.get_item(key)?.unwrap_or_else(|| key.clone()),
                None => key.clone(),
            },
        };
        data.set_item(&name, from_doc_value(py, c, value, &root.obj(key), 1)?)?;
    }
    if versioned && !saw_version {
        data.set_item(intern!(py, "version"), 0)?;
    }
    Ok(data)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(map_to_doc, m)?)?;
    m.add_function(wrap_pyfunction!(map_from_doc, m)?)?;
    Ok(())
}
