//! Model data <-> MongoDB document: one pass each way.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/mapping.py` (same results, same errors).
//!
//! `map_to_doc` turns a `model_dump()` result into the document the driver encodes
//! (`_id`, `_version`, renames, Decimal -> Decimal128, UUID -> Binary subtype 4,
//! datetimes -> aware UTC, date -> UTC midnight, Enum -> value, set/tuple -> list);
//! `map_from_doc` reverses it for `model_validate`. BSON encoding itself stays with
//! the driver's C codec. Paths are built only when an error is raised.
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use std::cell::RefCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use pyo3::Borrowed;
use pyo3::PyTypeInfo;

use crate::errors::invalid_document;
use crate::keys::{
    bad_key_error, checked_key, child_path, display_path, index_path, key_problem,
    known_good_key, remember_good_key, too_deep_error, MAX_DEPTH,
};

// --- cached Python objects ----------------------------------------------------------
struct Cache {
    decimal: Py<PyType>,
    /// `create_decimal` of a private context that holds every Decimal128 exactly (34
    /// digits, exponents -6176..6111, no clamping, no traps): the same Decimal as
    /// `Decimal(text)` for finite values, with less argument handling per call.
    exact_decimal: PyObject,
    uuid: Py<PyType>,
    datetime: Py<PyType>,
    date: Py<PyType>,
    enum_: Py<PyType>,
    decimal128: Py<PyType>,
    binary: Py<PyType>,
    base_model: Py<PyType>,
    objectid: Py<PyType>,
    mapping: Py<PyType>,
    seqs: Py<PyTuple>,
    byteslike: Py<PyTuple>,
    passthrough: Py<PyTuple>,
    bytes_new: PyObject,
    utc: PyObject,
    /// `bson.tz_util.utc`, what tz-aware clients attach: already UTC.
    bson_utc: PyObject,
    /// `SafeUUID.unknown` and the `int` / `is_safe` slots, when UUIDs can be built like
    /// uuid.py builds them.
    uuid_slots: Option<(PyObject, Slot, Slot)>,
    /// Decimal128's BID words: the slots `__high` / `__low`, when it keeps them there.
    decimal128_slots: Option<(Slot, Slot)>,
}

static CACHE: GILOnceCell<Cache> = GILOnceCell::new();

fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py
        .import(module)?
        .getattr(name)?
        .downcast_into::<PyType>()?
        .unbind())
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
            exact_decimal: {
                let decimal = py.import("decimal")?;
                let settings = PyDict::new(py);
                settings.set_item("prec", MAX_DIGITS as i64)?;
                // IEEE decimal128: adjusted exponents EXP_MIN..EXP_MAX plus the digits
                settings.set_item("Emax", (EXP_MAX + MAX_DIGITS - 1) as i64)?;
                settings.set_item("Emin", (EXP_MIN + MAX_DIGITS - 1) as i64)?;
                settings.set_item("clamp", 0)?;
                settings.set_item("traps", PyList::empty(py))?;
                decimal
                    .getattr("Context")?
                    .call((), Some(&settings))?
                    .getattr("create_decimal")?
                    .unbind()
            },
            uuid: class(py, "uuid", "UUID")?,
            datetime: class(py, "datetime", "datetime")?,
            date: class(py, "datetime", "date")?,
            enum_: class(py, "enum", "Enum")?,
            decimal128: class(py, "bson.decimal128", "Decimal128")?,
            binary: class(py, "bson.binary", "Binary")?,
            base_model: class(py, "pydantic", "BaseModel")?,
            objectid: class(py, "bson.objectid", "ObjectId")?,
            mapping: class(py, "collections.abc", "Mapping")?,
            seqs: tuple_of(vec![
                class(py, "builtins", "list")?,
                class(py, "builtins", "tuple")?,
                class(py, "builtins", "set")?,
                class(py, "builtins", "frozenset")?,
            ])?,
            byteslike: tuple_of(vec![
                class(py, "builtins", "bytearray")?,
                class(py, "builtins", "memoryview")?,
            ])?,
            passthrough,
            bytes_new: builtins.getattr("bytes")?.getattr("__new__")?.unbind(),
            uuid_slots: {
                let uuid = py.import("uuid")?;
                let cls = uuid.getattr("UUID")?.downcast_into::<PyType>()?;
                match (Slot::of(&cls, "int")?, Slot::of(&cls, "is_safe")?) {
                    (Some(int), Some(is_safe)) => Some((
                        uuid.getattr("SafeUUID")?.getattr("unknown")?.unbind(),
                        int,
                        is_safe,
                    )),
                    _ => None,
                }
            },
            decimal128_slots: {
                let cls = class(py, "bson.decimal128", "Decimal128")?;
                let cls = cls.bind(py);
                match (
                    Slot::of(cls, "_Decimal128__high")?,
                    Slot::of(cls, "_Decimal128__low")?,
                ) {
                    (Some(high), Some(low)) => Some((high, low)),
                    _ => None,
                }
            },
            utc: py
                .import("datetime")?
                .getattr("timezone")?
                .getattr("utc")?
                .unbind(),
            bson_utc: py.import("bson.tz_util")?.getattr("utc")?.unbind(),
        })
    })
}

/// A `__slots__` member of a class, read and written through its descriptor's own
/// functions: what `getattr` / `object.__setattr__` end up calling for it, without the
/// attribute lookup on the way (only used on exact instances of the class).
struct Slot {
    descr: PyObject,
    get: ffi::descrgetfunc,
    set: ffi::descrsetfunc,
}

impl Slot {
    /// The slot `name` of `cls`, if `cls` defines it as a member descriptor.
    fn of(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Option<Slot>> {
        let py = cls.py();
        let Ok(descr) = cls.getattr("__dict__")?.get_item(name) else {
            return Ok(None);
        };
        let member = py.import("types")?.getattr("MemberDescriptorType")?;
        if !descr.get_type().is(&member) {
            return Ok(None);
        }
        // SAFETY: the descriptor's type is a live type object; the slots read are the
        // documented tp_descr_get / tp_descr_set (PyType_GetSlot works on static types).
        let (get, set) = unsafe {
            let ty = descr.get_type().as_ptr().cast::<ffi::PyTypeObject>();
            (
                ffi::PyType_GetSlot(ty, ffi::Py_tp_descr_get),
                ffi::PyType_GetSlot(ty, ffi::Py_tp_descr_set),
            )
        };
        if get.is_null() || set.is_null() {
            return Ok(None);
        }
        Ok(Some(Slot {
            descr: descr.unbind(),
            // SAFETY: non-null function pointers of the documented signatures.
            get: unsafe { std::mem::transmute::<*mut std::ffi::c_void, ffi::descrgetfunc>(get) },
            set: unsafe { std::mem::transmute::<*mut std::ffi::c_void, ffi::descrsetfunc>(set) },
        }))
    }

    fn get<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        // SAFETY: live descriptor, instance and type; the result is a new reference.
        unsafe {
            let ty = obj.get_type();
            Bound::from_owned_ptr_or_err(
                py,
                (self.get)(self.descr.as_ptr(), obj.as_ptr(), ty.as_ptr()),
            )
        }
    }

    fn set(&self, obj: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        // SAFETY: live descriptor, instance and value; the setter increfs what it keeps.
        let rc = unsafe { (self.set)(self.descr.as_ptr(), obj.as_ptr(), value.as_ptr()) };
        if rc < 0 {
            Err(PyErr::fetch(obj.py()))
        } else {
            Ok(())
        }
    }
}

/// A new, uninitialised instance of the Python class `cls` (`object.__new__(cls)`).
fn bare_instance<'py>(py: Python<'py>, cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let args = PyTuple::empty(py);
    // SAFETY: `cls` is a live type object and `args` a live tuple; the result is a new reference.
    unsafe {
        let obj = ffi::PyType_GenericNew(
            cls.as_ptr().cast::<ffi::PyTypeObject>(),
            args.as_ptr(),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, obj)
    }
}

fn new_decimal128<'py>(
    py: Python<'py>,
    c: &Cache,
    high: u64,
    low: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = c.decimal128.bind(py);
    let Some((high_slot, low_slot)) = &c.decimal128_slots else {
        return cls.call1(((high, low),));
    };
    let obj = bare_instance(py, cls)?;
    high_slot.set(&obj, &high.into_pyobject(py)?.into_any())?;
    low_slot.set(&obj, &low.into_pyobject(py)?.into_any())?;
    Ok(obj)
}

fn new_uuid<'py>(py: Python<'py>, c: &Cache, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let cls = c.uuid.bind(py);
    let Some((unknown, int, is_safe)) = &c.uuid_slots else {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "bytes"), PyBytes::new(py, raw))?;
        return cls.call((), Some(&kwargs));
    };
    let mut be = [0u8; 16];
    be.copy_from_slice(raw);
    let obj = bare_instance(py, cls)?;
    int.set(&obj, &u128::from_be_bytes(be).into_pyobject(py)?.into_any())?;
    is_safe.set(&obj, unknown.bind(py))?;
    Ok(obj)
}

/// Decimal128's BID-word slots, when `value` is exactly a Decimal128 that keeps them.
fn exact_slots<'c>(c: &'c Cache, value: &Bound<'_, PyAny>) -> Option<&'c (Slot, Slot)> {
    let slots = c.decimal128_slots.as_ref()?;
    value.get_type().is(c.decimal128.bind(value.py())).then_some(slots)
}

fn uuid_binary<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let int = match &c.uuid_slots {
        Some((_, slot, _)) if value.get_type().is(c.uuid.bind(py)) => slot.get(value)?,
        _ => value.getattr(intern!(py, "int"))?,
    };
    let n: u128 = int.extract()?;
    let raw = PyBytes::new(py, &n.to_be_bytes());
    let binary = c.bytes_new.bind(py).call1((c.binary.bind(py), raw))?;
    binary.setattr(intern!(py, "_Binary__subtype"), 4)?;
    Ok(binary)
}

fn utc_midnight<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let y = value.getattr(intern!(py, "year"))?;
    let m = value.getattr(intern!(py, "month"))?;
    let d = value.getattr(intern!(py, "day"))?;
    c.datetime
        .bind(py)
        .call1((y, m, d, 0, 0, 0, 0, c.utc.bind(py)))
}

/// Iterates a dict's items with `PyDict_Next`, as borrowed references: callers look at
/// plain scalars through them (no Python code runs meanwhile) and take owned references
/// (`to_owned`) before anything that may run Python code. `PyDict_Next` itself stays
/// within the table even if such code changed the dict.
struct Items<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    pos: ffi::Py_ssize_t,
}

fn items<'a, 'py>(dict: &'a Bound<'py, PyDict>) -> Items<'a, 'py> {
    Items { dict, pos: 0 }
}

impl<'a, 'py> Iterator for Items<'a, 'py> {
    type Item = (Borrowed<'a, 'py, PyAny>, Borrowed<'a, 'py, PyAny>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: PyDict_Next returns live borrowed pointers owned by the dict; see above
        // for how long they are used borrowed.
        unsafe {
            if ffi::PyDict_Next(self.dict.as_ptr(), &mut self.pos, &mut key, &mut value) == 0 {
                return None;
            }
            let py = self.dict.py();
            Some((Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)))
        }
    }
}

/// Exact str, float, bool or None: stored and read as they are, and looking at them runs
/// no Python code.
fn plain(value: &Bound<'_, PyAny>) -> bool {
    value.is_exact_instance_of::<PyString>()
        || value.is_none()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
}

/// The low 64 bits of a Python int (Decimal128 keeps its BID words as ints).
fn u64_bits(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    // SAFETY: `value` is a live object; errors are reported through the error indicator.
    let bits = unsafe { ffi::PyLong_AsUnsignedLongLongMask(value.as_ptr()) };
    if bits == u64::MAX {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    Ok(bits)
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
    const ROOT: Path<'static, 'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    fn key(&'a self, key: &'a str) -> Path<'a, 'py> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    fn obj(&'a self, key: &'a Bound<'py, PyAny>) -> Path<'a, 'py> {
        Path {
            parent: Some(self),
            seg: Seg::Obj(key),
        }
    }

    fn index(&'a self, index: usize) -> Path<'a, 'py> {
        Path {
            parent: Some(self),
            seg: Seg::Index(index),
        }
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
        return if payload.is_empty() {
            Ok((sign | SNAN, 0))
        } else {
            Err(BidError::NanPayload)
        };
    }
    if let Some(payload) = body.strip_prefix("NaN") {
        return if payload.is_empty() {
            Ok((sign | NAN, 0))
        } else {
            Err(BidError::NanPayload)
        };
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
        let exp = exponent
            .max(exponent + length - MAX_DIGITS)
            .clamp(EXP_MIN, EXP_MAX);
        let shift = exp - exponent;
        if shift > trailing || length - shift > MAX_DIGITS {
            return Err(BidError::Inexact);
        }
        let keep = if shift >= 0 {
            (length - shift) as usize
        } else {
            length as usize
        };
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

/// A small stack buffer for number text (no allocation per value).
struct TextBuf {
    bytes: [u8; 96],
    len: usize,
}

impl TextBuf {
    fn new() -> Self {
        TextBuf {
            bytes: [0; 96],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    fn extend_from_slice(&mut self, s: &[u8]) {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn as_str(&self) -> &str {
        // SAFETY: only ASCII digits, signs and letters are ever written.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len]) }
    }
}

/// Appends the decimal digits of `n` (u128 division only when needed).
fn push_digits(out: &mut TextBuf, mut n: u128) {
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    while n > u128::from(u64::MAX) {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut small = n as u64;
    loop {
        at -= 1;
        buf[at] = b'0' + (small % 10) as u8;
        small /= 10;
        if small == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// The text of the exact Decimal of BID words (non-canonical coefficients read as 0),
/// written into `out`.
fn decimal_text_of_bid(high: u64, low: u64, out: &mut TextBuf) {
    if high & SIGN != 0 {
        out.push(b'-');
    }
    if high & SNAN == SNAN {
        out.extend_from_slice(b"sNaN");
        return;
    }
    if high & NAN == NAN {
        out.extend_from_slice(b"NaN");
        return;
    }
    if high & INF == INF {
        out.extend_from_slice(b"Infinity");
        return;
    }
    let (coefficient, exponent) = if high & COMBINATION_11 == COMBINATION_11 {
        (0u128, ((high >> 47) & 0x3FFF) as i128 - EXP_BIAS)
    } else {
        let c = (u128::from(high & 0x1_FFFF_FFFF_FFFF) << 64) | u128::from(low);
        (
            if c > MAX_COEFFICIENT { 0 } else { c },
            ((high >> 49) & 0x3FFF) as i128 - EXP_BIAS,
        )
    };
    if (-PLAIN_SCALE..=0).contains(&exponent) {
        push_plain(out, coefficient, exponent.unsigned_abs() as usize);
        return;
    }
    push_digits(out, coefficient);
    out.push(b'E');
    if exponent < 0 {
        out.push(b'-');
    }
    push_digits(out, exponent.unsigned_abs());
}

/// Exponents down to this are written as plain decimals ("19.99", "0.005"), which
/// Decimal parses faster than "1999E-2" and reads as the same coefficient and exponent.
const PLAIN_SCALE: i128 = 40;

/// `coefficient` scaled down by `scale` digits, written as a plain decimal.
fn push_plain(out: &mut TextBuf, coefficient: u128, scale: usize) {
    let mut digits = TextBuf::new();
    push_digits(&mut digits, coefficient);
    let digits = &digits.bytes[..digits.len];
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let point = digits.len() - scale;
        out.extend_from_slice(&digits[..point]);
        out.push(b'.');
        out.extend_from_slice(&digits[point..]);
    } else {
        out.extend_from_slice(b"0.");
        for _ in digits.len()..scale {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    }
}

fn to_decimal128<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let text = value.str()?;
    let text = text.to_str()?;
    match bid_of_decimal_text(text) {
        Ok((high, low)) => new_decimal128(py, c, high, low),
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

fn from_decimal128<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (high, low) = if let Some((high, low)) = exact_slots(c, value) {
        (u64_bits(py, &high.get(value)?)?, u64_bits(py, &low.get(value)?)?)
    } else {
        value
            .call_method0(intern!(py, "__getstate__"))?
            .extract::<(u64, u64)>()?
    };
    let mut text = TextBuf::new();
    decimal_text_of_bid(high, low, &mut text);
    let text = PyString::new(py, text.as_str());
    if high & INF == INF {
        // Infinity, NaN, sNaN: the constructor keeps them as they are
        return c.decimal.bind(py).call1((text,));
    }
    call_with_one_arg(c.exact_decimal.bind(py), text.into_any())
}

/// A one-item args tuple kept between calls (see [`call_with_one_arg`]).
static ONE_ARG: GILProtected<RefCell<Option<Py<PyTuple>>>> = GILProtected::new(RefCell::new(None));

/// `function(arg)` with a reused args tuple: `function` (a C function that only borrows
/// its arguments) leaves the tuple with its one reference, and `PyTuple_SetItem` refuses
/// (SystemError) to change a tuple anything else holds, so a reused tuple is never one
/// that some other code can see change.
fn call_with_one_arg<'py>(function: &Bound<'py, PyAny>, arg: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = function.py();
    let cell = ONE_ARG.get(py);
    let reused = cell.borrow_mut().take();
    let args = match reused {
        Some(args) if args.get_refcnt(py) == 1 => args,
        _ => PyTuple::new(py, [py.None()])?.unbind(),
    };
    // SAFETY: `args` is a live 1-tuple; SetItem steals the new reference to `arg`.
    if unsafe { ffi::PyTuple_SetItem(args.as_ptr(), 0, arg.into_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: live callable and args tuple; the result is a new reference.
    let result = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyObject_Call(function.as_ptr(), args.as_ptr(), std::ptr::null_mut()))
    };
    *cell.borrow_mut() = Some(args);
    result
}

// --- shared value rules ----------------------------------------------------------------
// Every conversion returns `None` when the value is kept as it is, so containers whose
// children are all kept are not copied (copy on write; the input is never modified).
type Mapped<'py> = PyResult<Option<Bound<'py, PyAny>>>;

fn utc_datetime<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> Mapped<'py> {
    let utc = c.utc.bind(py);
    let tz = value.getattr(intern!(py, "tzinfo"))?;
    if tz.is_none() {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "tzinfo"), utc)?;
        Ok(Some(value.call_method(
            intern!(py, "replace"),
            (),
            Some(&kwargs),
        )?))
    } else if tz.is(utc) || tz.is(c.bson_utc.bind(py)) {
        Ok(None)
    } else {
        Ok(Some(value.call_method1(intern!(py, "astimezone"), (utc,))?))
    }
}

fn int_in_range<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
) -> Mapped<'py> {
    if value.extract::<i64>().is_ok() {
        Ok(None)
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

/// Whether a container handed down as `owned` (only its parent, itself ours, refers to
/// it: the caller's promise for the top level) may be changed in place: only when
/// nothing else refers to it, its parent's reference and the walk's own being the only
/// two. A container pydantic's serializer shares with the model, or that appears twice,
/// has more and is copied instead, so a model's own state is never changed.
fn ours(container: &Bound<'_, PyAny>, owned: bool) -> bool {
    owned && container.get_refcnt() <= 2
}

/// A list: copied on the first changed item, or changed in place when it is ours (see
/// [`ours`]); other sequences (tuple, set, ...) always become a new list.
fn map_seq<'py>(
    py: Python<'py>,
    c: &Cache,
    items: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
    rule: ValueRule,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    if let Ok(list) = items.downcast_exact::<PyList>() {
        let owned = ours(list, owned);
        let mut out: Option<Bound<'py, PyList>> = None;
        // the length is read again each time: Python code run for an item may change it
        let mut i = 0;
        while i < list.len() {
            // SAFETY: `i` is within the current length; the borrowed pointer is looked at
            // before any Python code runs, and owned before anything else.
            let borrowed = unsafe {
                Borrowed::from_ptr(py, ffi::PyList_GetItem(list.as_ptr(), i as ffi::Py_ssize_t))
            };
            i += 1;
            if plain(&borrowed) {
                continue;
            }
            let item = borrowed.to_owned();
            let i = i - 1;
            if let Some(new) = rule(py, c, &item, &path.index(i), depth + 1, owned)? {
                let target = match &out {
                    Some(o) => o,
                    None if owned => list,
                    None => out.insert(list.get_slice(0, list.len())),
                };
                target.set_item(i, new)?;
            }
        }
        return Ok(out.map(Bound::into_any));
    }
    let out = PyList::empty(py);
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        let new = rule(py, c, &item, &path.index(i), depth + 1, owned)?;
        out.append(new.unwrap_or(item))?;
    }
    Ok(Some(out.into_any()))
}

type ValueRule = for<'a, 'py> fn(
    Python<'py>,
    &Cache,
    &Bound<'py, PyAny>,
    &Path<'a, 'py>,
    usize,
    bool,
) -> Mapped<'py>;

// --- model data -> document ------------------------------------------------------------
/// Raises `InvalidDocument` naming the key when `key` cannot be a field name under `parent`.
fn check_key<'py>(py: Python<'py>, key: &Bound<'py, PyAny>, parent: &Path<'_, 'py>) -> PyResult<()> {
    if known_good_key(key) {
        return Ok(());
    }
    let Ok(s) = key.downcast::<PyString>() else {
        return Err(checked_key(py, key, &parent.render())
            .err()
            .unwrap_or_else(|| invalid_document(py, "bad key".into())));
    };
    let text = s.to_str()?;
    if let Some(problem) = key_problem(text) {
        return Err(bad_key_error(
            py,
            &child_path(&parent.render(), text),
            problem,
        ));
    }
    if let Ok(exact) = key.downcast_exact::<PyString>() {
        remember_good_key(exact);
    }
    Ok(())
}

/// A dict with checked keys: copied on the first changed value (changed in place when it
/// is ours, see [`ours`]: only values of existing keys are replaced, which iteration
/// allows), always copied to a plain dict when `value` is a dict subclass.
fn dict_to_doc<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyDict>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let owned = ours(value, owned);
    let mut out: Option<Bound<'py, PyDict>> = if value.is_exact_instance_of::<PyDict>() {
        None
    } else {
        Some(value.copy()?)
    };
    for (key, child) in items(value) {
        if plain(&child) && key.is_exact_instance_of::<PyString>() {
            check_key(py, &key, path)?;
            continue;
        }
        let (key, child) = (key.to_owned(), child.to_owned());
        check_key(py, &key, path)?;
        if let Some(new) = to_doc_value(py, c, &child, &path.obj(&key), depth + 1, owned)? {
            let target = match &out {
                Some(o) => o,
                None if owned => value,
                None => out.insert(value.copy()?),
            };
            target.set_item(&key, new)?;
        }
    }
    Ok(out.map(Bound::into_any))
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

fn to_doc_value<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
) -> Mapped<'py> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Ok(None);
    }
    if value.is_exact_instance_of::<PyInt>() {
        return int_in_range(py, value, path);
    }
    if let Ok(dict) = value.downcast_exact::<PyDict>() {
        return dict_to_doc(py, c, dict, path, depth, owned);
    }
    if value.is_exact_instance_of::<PyList>() {
        return map_seq(py, c, value, path, depth, owned, to_doc_value);
    }
    // Exact types first (none of them is an Enum): same results as the cascade below.
    let ty = value.get_type();
    if ty.is(c.decimal.bind(py)) {
        return to_decimal128(py, c, value, path).map(Some);
    }
    if ty.is(c.datetime.bind(py)) {
        return utc_datetime(py, c, value);
    }
    if ty.is(c.uuid.bind(py)) {
        return uuid_binary(py, c, value).map(Some);
    }
    if ty.is(c.date.bind(py)) {
        return utc_midnight(py, c, value).map(Some);
    }
    if ty.is(c.objectid.bind(py))
        || ty.is(c.decimal128.bind(py))
        || ty.is(c.binary.bind(py))
        || value.is_exact_instance_of::<PyBytes>()
    {
        return Ok(None);
    }
    // The rule order of the pure twin.
    if value.is_instance(c.enum_.bind(py))? {
        let inner = value.getattr(intern!(py, "_value_"))?;
        return Ok(Some(
            // the value belongs to the Enum member: never changed in place
            to_doc_value(py, c, &inner, path, depth, false)?.unwrap_or(inner),
        ));
    }
    if value.is_instance(c.decimal.bind(py))? {
        return to_decimal128(py, c, value, path).map(Some);
    }
    if value.is_instance(c.datetime.bind(py))? {
        return utc_datetime(py, c, value);
    }
    if value.is_instance(c.date.bind(py))? {
        return utc_midnight(py, c, value).map(Some);
    }
    if value.is_instance(c.uuid.bind(py))? {
        return uuid_binary(py, c, value).map(Some);
    }
    if value.is_instance_of::<PyBool>()
        || value.is_instance_of::<PyFloat>()
        || value.is_instance_of::<PyString>()
    {
        return Ok(None);
    }
    if value.is_instance_of::<PyInt>() {
        return int_in_range(py, value, path);
    }
    if let Ok(dict) = value.downcast::<PyDict>() {
        return dict_to_doc(py, c, dict, path, depth, owned);
    }
    if value.is_instance(c.seqs.bind(py).as_any())? {
        return map_seq(py, c, value, path, depth, owned, to_doc_value);
    }
    if value.is_instance(c.byteslike.bind(py).as_any())? {
        return Ok(Some(PyBytes::type_object(py).call1((value,))?));
    }
    if value.is_instance(c.passthrough.bind(py).as_any())? {
        return Ok(None);
    }
    if value.is_instance(c.base_model.bind(py))? {
        let dumped = value.call_method0(intern!(py, "model_dump"))?;
        let dict = dumped.downcast::<PyDict>()?;
        return Ok(Some(
            dict_to_doc(py, c, dict, path, depth, false)?.unwrap_or_else(|| dict.clone().into_any()),
        ));
    }
    Err(unsupported(py, value, path))
}

/// Whether `key` is the id field or (when `versioned`) `version`; the length is compared
/// first, so most keys are never decoded.
fn is_reserved_key(
    key: &Bound<'_, PyString>,
    id_text: &str,
    id_len: usize,
    versioned: bool,
) -> PyResult<bool> {
    // SAFETY: `key` is a live str object.
    let len = unsafe { ffi::PyUnicode_GetLength(key.as_ptr()) } as usize;
    if len == id_len && key.to_str()? == id_text {
        return Ok(true);
    }
    Ok(versioned && len == 7 && key.to_str()? == "version")
}

/// Renamed fields (`_id`, `_version`, `field_map` targets) go last, after the fields they
/// replace are removed; a name written twice drops the document with an error.
fn finish_renames<'py>(
    py: Python<'py>,
    doc: &Bound<'py, PyDict>,
    removed: Vec<Bound<'py, PyAny>>,
    renamed: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    check_twice: bool,
) -> PyResult<()> {
    for key in removed {
        doc.del_item(key)?;
    }
    for (target, value) in renamed {
        if check_twice && doc.contains(&target)? {
            // the document is dropped: nothing half-written reaches the caller
            let text = target.str()?.to_string();
            return Err(invalid_document(
                py,
                format!(
                    "document field '{text}' is written twice; check field_map for two fields mapped to the same name or a field named like '_id'/'_version'"
                ),
            ));
        }
        doc.set_item(target, value)?;
    }
    Ok(())
}

/// The dict to write the result into: `data` itself when `owned` allows it (and it is a
/// plain dict), else a copy (one cheap clone of the table; only what changes is changed).
fn output_dict<'py>(data: &Bound<'py, PyDict>, owned: bool) -> PyResult<Bound<'py, PyDict>> {
    if !data.is_exact_instance_of::<PyDict>() {
        return PyDict::type_object(data.py())
            .call1((data,))?
            .downcast_into::<PyDict>()
            .map_err(Into::into);
    }
    if owned {
        Ok(data.clone())
    } else {
        data.copy()
    }
}

/// The MongoDB document of `data` (a `model_dump()` result); see the pure twin.
#[pyfunction]
#[pyo3(signature = (data, id_field, field_map, versioned, owned=false))]
pub fn map_to_doc<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    id_field: &Bound<'py, PyString>,
    field_map: Option<&Bound<'py, PyDict>>,
    versioned: bool,
    owned: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let c = cache(py)?;
    let Ok(data) = data.downcast::<PyDict>() else {
        let name: String = data.get_type().getattr("__qualname__")?.extract()?;
        return Err(invalid_document(
            py,
            format!("a model's data must be a dict, got {name}; pass model_dump()"),
        ));
    };
    let root = Path::ROOT;
    let doc = output_dict(data, owned)?;
    // iterate `data` (when it is `doc`, only values of existing keys change meanwhile)
    let owned = owned && doc.is(data);
    let id_text = id_field.to_str()?;
    let id_len = id_field.len()?;
    let mut removed: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut renamed: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::new();
    for (bkey, bvalue) in items(data) {
        // Fast path through borrowed references: an exact str key, no rename map (so no
        // lookup that could run Python code) and a plain value.
        if field_map.is_none() && plain(&bvalue) {
            if let Ok(k) = bkey.downcast_exact::<PyString>() {
                if !is_reserved_key(k, id_text, id_len, versioned)? {
                    check_key(py, &bkey, &root)?;
                    continue;
                }
            }
        }
        let (key, value) = (bkey.to_owned(), bvalue.to_owned());
        let text = key
            .downcast::<PyString>()
            .ok()
            .map(|k| k.to_str())
            .transpose()?;
        if text == Some(id_text) || (versioned && text == Some("version")) {
            let (name, child) = if text == Some(id_text) {
                (intern!(py, "_id"), root.key("_id"))
            } else {
                (intern!(py, "_version"), root.key("_version"))
            };
            removed.push(key);
            if name.to_str()? == "_version" || !value.is_none() {
                let new = to_doc_value(py, c, &value, &child, 1, owned)?;
                renamed.push((name.clone().into_any(), new.unwrap_or(value)));
            }
            continue;
        }
        let target = match field_map {
            Some(map) => map.get_item(&key)?,
            None => None,
        };
        match target {
            None => {
                check_key(py, &key, &root)?;
                if let Some(new) = to_doc_value(py, c, &value, &root.obj(&key), 1, owned)? {
                    doc.set_item(&key, new)?;
                }
            }
            Some(target) => {
                check_key(py, &target, &root)?;
                let new = to_doc_value(py, c, &value, &root.obj(&target), 1, owned)?;
                removed.push(key);
                renamed.push((target.clone(), new.unwrap_or(value)));
            }
        }
    }
    finish_renames(py, &doc, removed, renamed, true)?;
    Ok(doc)
}

// --- document -> model data -------------------------------------------------------------
/// A dict: copied on the first changed value, always copied when a dict subclass.
fn dict_from_doc<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyDict>,
    path: &Path<'_, 'py>,
    depth: usize,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let mut out: Option<Bound<'py, PyDict>> = if value.is_exact_instance_of::<PyDict>() {
        None
    } else {
        Some(value.copy()?)
    };
    for (key, child) in items(value) {
        if plain(&child) || child.is_exact_instance_of::<PyInt>() {
            continue;
        }
        let (key, child) = (key.to_owned(), child.to_owned());
        if let Some(new) = from_doc_value(py, c, &child, &path.obj(&key), depth + 1, false)? {
            let target = match &out {
                Some(o) => o,
                None => out.insert(value.copy()?),
            };
            target.set_item(&key, new)?;
        }
    }
    Ok(out.map(Bound::into_any))
}

fn binary_value<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> Mapped<'py> {
    let subtype: i64 = match value.getattr(intern!(py, "_Binary__subtype")) {
        Ok(s) => s.extract()?,
        Err(_) => value.getattr(intern!(py, "subtype"))?.extract()?,
    };
    if subtype == 4 {
        let raw = value.downcast::<PyBytes>()?.as_bytes();
        if raw.len() == 16 {
            return new_uuid(py, c, raw).map(Some);
        }
    } else if subtype == 0 {
        return Ok(Some(
            PyBytes::new(py, value.downcast::<PyBytes>()?.as_bytes()).into_any(),
        ));
    }
    Ok(None)
}

/// (`_owned` is part of the rule signature `map_seq` shares: a document being read is
/// the caller's, never changed in place.)
fn from_doc_value<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    _owned: bool,
) -> Mapped<'py> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Ok(None);
    }
    if let Ok(dict) = value.downcast_exact::<PyDict>() {
        return dict_from_doc(py, c, dict, path, depth);
    }
    if value.is_exact_instance_of::<PyList>() {
        return map_seq(py, c, value, path, depth, false, from_doc_value);
    }
    let ty = value.get_type();
    if ty.is(c.decimal128.bind(py)) {
        return from_decimal128(py, c, value).map(Some);
    }
    if ty.is(c.datetime.bind(py)) {
        return utc_datetime(py, c, value);
    }
    if ty.is(c.binary.bind(py)) {
        return binary_value(py, c, value);
    }
    if ty.is(c.uuid.bind(py)) || ty.is(c.objectid.bind(py)) {
        return Ok(None); // what the cascade below concludes, sooner
    }
    if let Ok(dict) = value.downcast::<PyDict>() {
        return dict_from_doc(py, c, dict, path, depth);
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return map_seq(py, c, value, path, depth, false, from_doc_value);
    }
    if value.is_instance(c.decimal128.bind(py))? {
        return from_decimal128(py, c, value).map(Some);
    }
    if value.is_instance(c.datetime.bind(py))? {
        return utc_datetime(py, c, value);
    }
    Ok(None)
}

/// `Some("_id")` / `Some("_version")` for those keys, else None (cheap length test first:
/// most keys are neither).
fn reserved_name<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a str>> {
    let Ok(s) = key.downcast::<PyString>() else {
        return Ok(None);
    };
    // SAFETY: `s` is a live str object.
    let len = unsafe { ffi::PyUnicode_GetLength(s.as_ptr()) };
    if len != 3 && len != 8 {
        return Ok(None);
    }
    let text = s.to_str()?;
    Ok(if text == "_id" || text == "_version" {
        Some(text)
    } else {
        None
    })
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
    let source: Bound<'py, PyDict> = if let Ok(dict) = doc.downcast::<PyDict>() {
        dict.clone()
    } else if doc.is_instance(c.mapping.bind(py))? {
        // other mappings: a plain snapshot, which is then ours to change
        PyDict::type_object(py)
            .call1((doc,))?
            .downcast_into::<PyDict>()?
    } else {
        let name: String = doc.get_type().getattr("__qualname__")?.extract()?;
        return Err(invalid_document(
            py,
            format!("a stored document must be a mapping, got {name}"),
        ));
    };
    // the caller's dict is copied; a snapshot of another mapping is ours to change
    let data = output_dict(&source, !doc.is(&source))?;
    let root = Path::ROOT;
    let mut removed: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut renamed: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::new();
    let mut saw_version = false;
    for (key, value) in items(&source) {
        if reverse_map.is_none()
            && (plain(&value) || value.is_exact_instance_of::<PyInt>())
            && reserved_name(&key)?.is_none()
        {
            continue;
        }
        let (key, value) = (key.to_owned(), value.to_owned());
        // nested containers stay the caller's (a snapshot of a mapping is shallow)
        let new = from_doc_value(py, c, &value, &root.obj(&key), 1, false)?;
        let name: Option<Bound<'py, PyAny>> = match reserved_name(&key)? {
            Some("_id") => Some(id_field.clone().into_any()),
            Some("_version") if versioned => {
                saw_version = true;
                Some(intern!(py, "version").clone().into_any())
            }
            _ => match reverse_map {
                Some(map) => map.get_item(&key)?,
                None => None,
            },
        };
        match name {
            Some(name) => {
                removed.push(key);
                renamed.push((name, new.unwrap_or(value)));
            }
            None => {
                if let Some(new) = new {
                    data.set_item(&key, new)?;
                }
            }
        }
    }
    // renamed fields win over a same-named field
    finish_renames(py, &data, removed, renamed, false)?;
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
