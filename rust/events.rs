//! Event documents of one raw cursor batch (BSON documents back to back, as a raw-batch
//! cursor returns them) -> their positions and `StoredEvent`s, without a dict per
//! document: what every projection rebuild decodes.
//!
//! Covers the documents the event store writes, holding the common BSON types (double,
//! string, document, array, bool, UTC datetime, null, int32, int64). A batch with anything
//! else (another type, a missing or extra field, an `event_type` that is not a string,
//! malformed BSON, a datetime outside years 1-9999, a `$ref` sub-document, nesting past
//! `MAX_DEPTH`) is handed to the twin (pymongo's decoder plus `from_document`), so the
//! answer and every error are the twin's for every input. Upcasting is the caller's.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/events.py`.
use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;

/// Deeper sub-documents go to the twin (which has its own bound).
use crate::keys::MAX_DEPTH;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};

use crate::errors::{guarded, ErrorKind};
use crate::types::{cache, Cache};

/// The stored field names, in the order of `ATTRIBUTES` (the StoredEvent slot each fills).
const FIELDS: [&[u8]; 13] = [
    b"_id",
    b"event_type",
    b"aggregate_id",
    b"aggregate_type",
    b"version",
    b"schema_version",
    b"payload",
    b"metadata",
    b"occurred_at",
    b"correlation_id",
    b"causation_id",
    b"tenant_id",
    b"position",
];
const EVENT_TYPE: usize = 1;
const PAYLOAD: usize = 6;
const METADATA: usize = 7;
const POSITION: usize = 12;
/// `event_type` of a hole marker (`core/_event_codec.py`): only its position is read.
const GAP_EVENT_TYPE: &str = "$gap";
/// Milliseconds since the epoch of 0001-01-01 and of the end of 9999-12-31 (UTC).
const MIN_MILLIS: i64 = -62_135_596_800_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Why decoding stopped: a document outside what this decoder covers, or a Python error.
enum Stop {
    Unsupported,
    Python(PyErr),
}

impl From<PyErr> for Stop {
    fn from(err: PyErr) -> Self {
        Stop::Python(err)
    }
}

type Decoded<T> = Result<T, Stop>;

struct Classes {
    stored_event: Py<PyType>,
    object_new: PyObject,
    int64: Py<PyType>,
}

static CLASSES: GILOnceCell<Classes> = GILOnceCell::new();

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || {
        let class = |module: &str, name: &str| -> PyResult<Py<PyType>> {
            Ok(py.import(module)?.getattr(name)?.downcast_into::<PyType>()?.unbind())
        };
        Ok(Classes {
            stored_event: class("cqrs_ddd_persistence_mongo.domain.events", "StoredEvent")?,
            object_new: py.import("builtins")?.getattr("object")?.getattr("__new__")?.unbind(),
            int64: class("bson.int64", "Int64")?,
        })
    })
}

/// A bounds-checked reader over one BSON buffer.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or(Stop::Unsupported)?;
        let bytes = self.buf.get(self.at..end).ok_or(Stop::Unsupported)?;
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Decoded<i32> {
        let bytes = self.take(4)?;
        Ok(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn i64(&mut self) -> Decoded<i64> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(word))
    }

    fn f64(&mut self) -> Decoded<f64> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(word))
    }

    /// An element name: bytes up to a NUL, valid UTF-8.
    fn cstring(&mut self) -> Decoded<&'a [u8]> {
        let rest = self.buf.get(self.at..).ok_or(Stop::Unsupported)?;
        let len = rest.iter().position(|&b| b == 0).ok_or(Stop::Unsupported)?;
        let name = &rest[..len];
        std::str::from_utf8(name).map_err(|_| Stop::Unsupported)?;
        self.at += len + 1;
        Ok(name)
    }

    /// The body of a length-prefixed document (without its length and final NUL).
    fn document_body(&mut self) -> Decoded<&'a [u8]> {
        let len = usize::try_from(self.i32()?).map_err(|_| Stop::Unsupported)?;
        if len < 5 {
            return Err(Stop::Unsupported);
        }
        let whole = self.take(len - 4)?;
        match whole.split_last() {
            Some((0, body)) => Ok(body),
            _ => Err(Stop::Unsupported),
        }
    }

    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }
}

struct Decoder<'a, 'py> {
    py: Python<'py>,
    keys: HashMap<&'a [u8], Bound<'py, PyString>>,
    int64: Bound<'py, PyType>,
    types: &'static Cache,
}

impl<'a, 'py> Decoder<'a, 'py> {
    fn key(&mut self, name: &'a [u8]) -> Bound<'py, PyString> {
        let py = self.py;
        self.keys
            .entry(name)
            .or_insert_with(|| PyString::new(py, std::str::from_utf8(name).unwrap_or_default()))
            .clone()
    }

    /// One value of BSON type `kind`, as pymongo decodes it with `tz_aware=True`.
    fn value(&mut self, kind: u8, reader: &mut Reader<'a>, depth: usize) -> Decoded<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match kind {
            0x01 => PyFloat::new(py, reader.f64()?).into_any(),
            0x02 => {
                let len = usize::try_from(reader.i32()?).map_err(|_| Stop::Unsupported)?;
                let bytes = reader.take(len)?;
                let (0, text) = bytes.split_last().ok_or(Stop::Unsupported)? else {
                    return Err(Stop::Unsupported);
                };
                PyString::new(py, std::str::from_utf8(text).map_err(|_| Stop::Unsupported)?).into_any()
            }
            0x03 => self.document(reader.document_body()?, depth + 1)?.into_any(),
            0x04 => self.array(reader.document_body()?, depth + 1)?.into_any(),
            0x08 => match reader.byte()? {
                0 => PyBool::new(py, false).to_owned().into_any(),
                1 => PyBool::new(py, true).to_owned().into_any(),
                _ => return Err(Stop::Unsupported),
            },
            0x09 => utc_datetime(py, self.types, reader.i64()?)?,
            0x0A => py.None().into_bound(py),
            0x10 => match reader.i32()?.into_pyobject(py) {
                Ok(int) => int.into_any(),
                Err(never) => match never {},
            },
            0x12 => self.int64.call1((reader.i64()?,))?,
            _ => return Err(Stop::Unsupported),
        })
    }

    /// Each element of a document body in order, as (its type, its name, its value decoded
    /// one level below `depth`), given to `each` with this decoder.
    fn elements(
        &mut self,
        body: &'a [u8],
        depth: usize,
        mut each: impl FnMut(&mut Self, u8, &'a [u8], Bound<'py, PyAny>) -> Decoded<()>,
    ) -> Decoded<()> {
        if depth > MAX_DEPTH {
            return Err(Stop::Unsupported);
        }
        let mut reader = Reader { buf: body, at: 0 };
        while !reader.done() {
            let kind = reader.byte()?;
            let name = reader.cstring()?;
            let value = self.value(kind, &mut reader, depth)?;
            each(self, kind, name, value)?;
        }
        Ok(())
    }

    fn document(&mut self, body: &'a [u8], depth: usize) -> Decoded<Bound<'py, PyDict>> {
        let dict = PyDict::new(self.py);
        self.elements(body, depth, |decoder, _, name, value| {
            if name == b"$ref" {
                return Err(Stop::Unsupported); // pymongo may make it a DBRef
            }
            Ok(dict.set_item(decoder.key(name), value)?)
        })?;
        Ok(dict)
    }

    fn array(&mut self, body: &'a [u8], depth: usize) -> Decoded<Bound<'py, PyList>> {
        let list = PyList::empty(self.py);
        // array keys are "0", "1", ...: pymongo ignores them
        self.elements(body, depth, |_, _, _, value| Ok(list.append(value)?))?;
        Ok(list)
    }

    /// One event document: (its position, its StoredEvent or None for a hole marker).
    fn event(&mut self, body: &'a [u8], c: &Classes) -> Decoded<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        let py = self.py;
        let mut values: [Option<Bound<'py, PyAny>>; 13] = Default::default();
        self.elements(body, 0, |_, kind, name, value| {
            let field = FIELDS.iter().position(|f| *f == name).ok_or(Stop::Unsupported)?;
            let covered = match field {
                POSITION => kind == 0x10 || kind == 0x12,
                EVENT_TYPE => kind == 0x02, // the twin's registry lookup needs a hashable name
                _ => true,
            };
            if !covered {
                return Err(Stop::Unsupported);
            }
            values[field] = Some(value); // a repeated field: the last wins, as in pymongo's dict
            Ok(())
        })?;
        let position = values[POSITION].clone().ok_or(Stop::Unsupported)?;
        let event_type = values[EVENT_TYPE].as_ref().ok_or(Stop::Unsupported)?;
        if event_type.downcast::<PyString>().map_err(|_| Stop::Unsupported)?.to_str()? == GAP_EVENT_TYPE {
            return Ok((position, None));
        }
        let event = c.object_new.bind(py).call1((c.stored_event.bind(py),))?;
        let names = [
            intern!(py, "event_id"),
            intern!(py, "event_type"),
            intern!(py, "aggregate_id"),
            intern!(py, "aggregate_type"),
            intern!(py, "version"),
            intern!(py, "schema_version"),
            intern!(py, "payload"),
            intern!(py, "metadata"),
            intern!(py, "occurred_at"),
            intern!(py, "correlation_id"),
            intern!(py, "causation_id"),
            intern!(py, "tenant_id"),
            intern!(py, "position"),
        ];
        for (field, slot) in values.into_iter().enumerate() {
            let mut value = slot.ok_or(Stop::Unsupported)?;
            if (field == PAYLOAD || field == METADATA) && !value.is_truthy()? {
                value = PyDict::new(py).into_any(); // `doc["payload"] or {}`
            }
            event.setattr(names[field], value)?;
        }
        Ok((position, Some(event)))
    }
}

/// `datetime` in UTC with `bson.tz_util.utc`, as pymongo's tz-aware decoding gives it.
fn utc_datetime<'py>(py: Python<'py>, c: &Cache, millis: i64) -> Decoded<Bound<'py, PyAny>> {
    if !(MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
        return Err(Stop::Unsupported);
    }
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let ymd = civil_from_days(days);
    let hms = (
        (in_day / 3_600_000) as i32,
        (in_day / 60_000 % 60) as i32,
        (in_day / 1000 % 60) as i32,
        (in_day % 1000 * 1000) as i32,
    );
    let tz = c.bson_utc.bind(py);
    let datetime = c.datetime.bind(py);
    Ok(match &c.date_layout {
        Some(layout) => layout.datetime(datetime, ymd, hms, tz)?,
        None => datetime.call1((ymd.0, ymd.1, ymd.2, hms.0, hms.1, hms.2, hms.3, tz))?,
    })
}

/// (year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i32, i32, i32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as i32, day as i32)
}

/// `(positions, events)` of the event documents in `data` (each position as stored: an
/// int, or an `Int64` past 32 bits), an event None for a hole marker. A batch with a
/// document outside what this decoder covers (see the module doc) is the twin's answer.
#[pyfunction]
fn decode_events<'py>(py: Python<'py>, data: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyAny>> {
    guarded(ErrorKind::Document, || {
        let c = classes(py)?;
        let mut decoder = Decoder { py, keys: HashMap::new(), int64: c.int64.bind(py).clone(), types: cache(py)? };
        let positions = PyList::empty(py);
        let events = PyList::empty(py);
        let mut reader = Reader { buf: data.as_bytes(), at: 0 };
        let outcome: Decoded<()> = (|| {
            while !reader.done() {
                let body = reader.document_body()?;
                let (position, event) = decoder.event(body, c)?;
                positions.append(position)?;
                events.append(event)?;
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => Ok(PyTuple::new(py, [positions, events])?.into_any()),
            Err(Stop::Unsupported) => py
                .import(intern!(py, "cqrs_ddd_persistence_mongo._pure.events"))?
                .getattr(intern!(py, "decode_events"))?
                .call1((data,)),
            Err(Stop::Python(err)) => Err(err),
        }
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_events, m)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(MIN_MILLIS.div_euclid(86_400_000)), (1, 1, 1));
        assert_eq!(civil_from_days(MAX_MILLIS.div_euclid(86_400_000)), (9999, 12, 31));
    }

    #[test]
    fn the_reader_refuses_to_read_past_its_buffer() {
        let mut reader = Reader { buf: &[1, 0, 0], at: 0 };
        assert!(reader.i32().is_err());
        let mut reader = Reader { buf: &[5, 0, 0, 0, 1], at: 0 };
        assert!(reader.document_body().is_err()); // a document must end with NUL
        let mut reader = Reader { buf: b"ab", at: 0 };
        assert!(reader.cstring().is_err()); // a name must end with NUL
        let mut reader = Reader { buf: &[0xff, 0xff, 0xff, 0x7f], at: 0 };
        assert!(reader.document_body().is_err()); // a length past the end
    }
}
