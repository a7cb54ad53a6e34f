//! Registration of the native module. Each hot path lives in its own file and
//! registers its functions here; nothing else belongs in this file.
use pyo3::prelude::*;

mod bulk;
mod codec;
mod decimal128;
mod errors;
mod events;
mod ffi;
mod filters;
mod keys;
mod mapping;
mod types;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    keys::register(m)?;
    mapping::register(m)?;
    codec::register(m)?;
    filters::register(m)?;
    bulk::register(m)?;
    events::register(m)?;
    // the private layouts are checked once, at import; if a class cannot be imported yet,
    // the first call builds the cache instead and reports why
    let _ = types::cache(m.py());
    Ok(())
}
