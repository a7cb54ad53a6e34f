//! Geometry operators on GeoJSON values: within, intersects, disjoint (`$geoWithin` /
//! `$geoIntersects`), dwithin / distance_lt (`$centerSphere`) and near (top level only, as
//! MongoDB requires). A geometry is given bare or as `{"$geometry": geometry}`; its
//! coordinates must be numbers nested as its type says, so nothing else reaches the server.
//! Circles and points also take the original library's forms (`[[lng, lat], radians]`,
//! `{"coordinates": [lng, lat], "maxDistance": meters}`).
use pyo3::exceptions::PyOverflowError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};

use super::ops::Op;
use super::support::*;
use super::Leaf;

const EARTH_RADIUS_M: f64 = 6378100.0;

const GEO_ALL: &[&str] = &["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"];

const GEO_AREAS: &[&str] = &["Polygon", "MultiPolygon"];

const GEO_POINT: &[&str] = &["Point"];

const GEO_KEYS_HINT: &str =
    "only 'type', 'coordinates' and 'crs' are allowed, optionally wrapped as {'$geometry': ...}";

const CRS_SHAPE: &str =
    "GeoJSON 'crs' must be {'type': 'name', 'properties': {'name': '...'}} (the only CRS MongoDB accepts)";

const CIRCLE_FORMS: &str =
    "{'geometry': Point, 'distance': meters}, {'coordinates': [lng, lat], 'maxDistance': meters} or [[lng, lat], radians]";

/// How many lists wrap the positions of a geometry of type `kind`.
fn nesting(kind: &str) -> usize {
    match kind {
        "Point" => 0,
        "MultiPoint" | "LineString" => 1,
        "MultiLineString" | "Polygon" => 2,
        _ => 3,
    }
}

/// Where a coordinate sits, rendered only for a message: `base[i][j]...`.
fn shown(base: &str, trail: &[usize]) -> String {
    let mut s = base.to_owned();
    for i in trail {
        s.push_str(&format!("[{i}]"));
    }
    s
}

fn coordinate(py: Python<'_>, val: &Bound<'_, PyAny>, base: &str, trail: &[usize], path: &Path<'_>) -> PyResult<()> {
    if val.is_instance_of::<PyBool>() || !(val.is_instance_of::<PyInt>() || val.is_instance_of::<PyFloat>()) {
        let problem = format!("GeoJSON '{}' must be a number, got {}", shown(base, trail), type_name(val));
        return Err(spec_error(py, path, problem));
    }
    let number: f64 = match val.extract() {
        Ok(n) => n,
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => f64::INFINITY, // an int beyond float range
        Err(e) => return Err(e),
    };
    if !number.is_finite() {
        let problem = format!("GeoJSON '{}' must be a finite number, got {}", shown(base, trail), repr(val));
        return Err(spec_error(py, path, problem));
    }
    Ok(())
}

/// `val` is a position (`[lng, lat, ...]` numbers) nested `levels` lists deep.
fn coordinates(
    py: Python<'_>,
    val: &Bound<'_, PyAny>,
    levels: usize,
    base: &str,
    trail: &mut Vec<usize>,
    path: &Path<'_>,
) -> PyResult<()> {
    let Some(items) = as_items(val) else {
        let problem = format!("GeoJSON '{}' must be a list, got {}", shown(base, trail), type_name(val));
        return Err(spec_error(py, path, problem));
    };
    if levels == 0 && items.len() < 2 {
        let problem =
            format!("GeoJSON '{}' must be a position [lng, lat], got {} value(s)", shown(base, trail), items.len());
        return Err(spec_error(py, path, problem));
    }
    for (index, item) in items.iter().enumerate() {
        trail.push(index);
        if levels == 0 {
            coordinate(py, item, base, trail, path)?;
        } else {
            coordinates(py, item, levels - 1, base, trail, path)?;
        }
        trail.pop();
    }
    Ok(())
}

/// A clean copy of MongoDB's one custom CRS (`{'type': 'name', 'properties': {'name': ...}}`).
fn crs<'py>(py: Python<'py>, val: &Bound<'py, PyAny>, path: &Path<'_>) -> PyResult<Bound<'py, PyDict>> {
    let name = (|| -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(d) = val.downcast::<PyDict>() else { return Ok(None) };
        let (Some(kind), Some(props)) = (d.get_item(intern!(py, "type"))?, d.get_item(intern!(py, "properties"))?)
        else {
            return Ok(None);
        };
        let Ok(props) = props.downcast::<PyDict>() else { return Ok(None) };
        let kind_ok = match kind.downcast::<PyString>() {
            Ok(k) => k.to_str()? == "name",
            Err(_) => false,
        };
        match props.get_item(intern!(py, "name"))? {
            Some(name) if d.len() == 2 && props.len() == 1 && kind_ok && name.is_instance_of::<PyString>() => {
                Ok(Some(name))
            }
            _ => Ok(None),
        }
    })()?;
    let Some(name) = name else {
        return Err(spec_error(py, path, CRS_SHAPE.to_owned()));
    };
    let props = PyDict::new(py);
    props.set_item(intern!(py, "name"), name)?;
    let out = PyDict::new(py);
    out.set_item(intern!(py, "type"), intern!(py, "name"))?;
    out.set_item(intern!(py, "properties"), props)?;
    Ok(out)
}

/// `val` without a `{'$geometry': ...}` wrapper (a dict of that one key), else `val`.
fn unwrapped<'py>(py: Python<'py>, val: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(d) = val.downcast::<PyDict>() {
        if d.len() == 1 {
            if let Some(inner) = d.get_item(intern!(py, "$geometry"))? {
                return Ok(inner);
            }
        }
    }
    Ok(val.clone())
}

/// A clean copy of a validated GeoJSON geometry, given bare or as `{'$geometry': geometry}`.
fn geometry<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<Bound<'py, PyDict>> {
    let val = unwrapped(py, val)?;
    let Ok(d) = val.downcast::<PyDict>() else {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator '{op}' expects a GeoJSON geometry {{'type': ..., 'coordinates': [...]}}, got {}",
                type_name(&val)
            ),
        ));
    };
    for key in d.keys() {
        if !key_in(&key, &["type", "coordinates", "crs"])? {
            return Err(spec_error(
                py,
                path,
                format!("GeoJSON geometry has unexpected key {}; {GEO_KEYS_HINT}", repr(&key)),
            ));
        }
    }
    let kind = d.get_item(intern!(py, "type"))?;
    let kind_ok = match &kind {
        Some(k) => key_in(k, allowed)?,
        None => false,
    };
    let (Some(kind), true) = (kind.clone(), kind_ok) else {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator '{op}' expects a GeoJSON geometry of type {}, got type {}",
                allowed.join(" or "),
                opt_repr(&kind)
            ),
        ));
    };
    let coords = d.get_item(intern!(py, "coordinates"))?.unwrap_or_else(|| py.None().into_bound(py));
    coordinates(py, &coords, nesting(kind.downcast::<PyString>()?.to_str()?), "coordinates", &mut Vec::new(), path)?;
    let out = PyDict::new(py);
    out.set_item(intern!(py, "type"), kind)?;
    out.set_item(intern!(py, "coordinates"), coords)?;
    if let Some(c) = d.get_item(intern!(py, "crs"))? {
        out.set_item(intern!(py, "crs"), crs(py, &c, path)?)?;
    }
    Ok(out)
}

fn unexpected_keys(py: Python<'_>, op: &str, d: &Bound<'_, PyDict>, path: &Path<'_>, allowed: &[&str]) -> PyResult<()> {
    for key in d.keys() {
        if !key_in(&key, allowed)? {
            return Err(spec_error(
                py,
                path,
                format!("operator '{op}' got unexpected key {}; allowed: {}", repr(&key), allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// `{"geometry": ..., <distance keys>}`: the dict itself, checked.
fn payload<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>)> {
    let Ok(d) = val.downcast::<PyDict>() else {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects a dict with keys {}, got {}", allowed.join(", "), type_name(val)),
        ));
    };
    unexpected_keys(py, op, d, path, allowed)?;
    let Some(geometry) = d.get_item(intern!(py, "geometry"))? else {
        return Err(spec_error(py, path, format!("operator '{op}' needs a 'geometry' (a GeoJSON Point)")));
    };
    Ok((d.clone(), geometry))
}

/// The original library's `{'coordinates': [lng, lat], 'maxDistance': m, ...}` form, when
/// `val` is a dict with 'coordinates': the Point geometry and the dict.
fn point_form<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<Option<(Bound<'py, PyDict>, Bound<'py, PyDict>)>> {
    let Ok(d) = val.downcast::<PyDict>() else { return Ok(None) };
    let Some(coords) = d.get_item(intern!(py, "coordinates"))? else { return Ok(None) };
    unexpected_keys(py, op, d, path, allowed)?;
    let bare = PyDict::new(py);
    match d.get_item(intern!(py, "type"))? {
        Some(kind) => bare.set_item(intern!(py, "type"), kind)?,
        None => bare.set_item(intern!(py, "type"), intern!(py, "Point"))?,
    }
    bare.set_item(intern!(py, "coordinates"), coords)?;
    Ok(Some((geometry(py, op, bare.as_any(), path, GEO_POINT)?, d.clone())))
}

fn required<'py>(py: Python<'py>, op: &str, d: &Bound<'py, PyDict>, name: &str, path: &Path<'_>) -> PyResult<f64> {
    let Some(v) = d.get_item(name)? else {
        return Err(spec_error(py, path, format!("operator '{op}' needs a '{name}' in meters")));
    };
    need_number(py, op, name, &v, path)
}

/// (center coordinates, radius in radians) of a dwithin / distance_lt value.
fn circle<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
) -> PyResult<(Bound<'py, PyAny>, f64)> {
    if let Some(items) = as_items(val) {
        let [center, radius] = items.as_slice() else {
            let problem = format!("operator '{op}' expects {CIRCLE_FORMS}, got a list of {} item(s)", items.len());
            return Err(spec_error(py, path, problem));
        };
        coordinates(py, center, 0, "[0]", &mut Vec::new(), path)?;
        return Ok((center.clone(), need_number(py, op, "radius", radius, path)?));
    }
    let (point, meters) = match point_form(py, op, val, path, &["type", "coordinates", "maxDistance"])? {
        Some((point, d)) => (point, required(py, op, &d, "maxDistance", path)?),
        None => {
            let (p, g) = payload(py, op, val, path, &["geometry", "distance"])?;
            let point = geometry(py, op, &g, path, GEO_POINT)?;
            (point, required(py, op, &p, "distance", path)?)
        }
    };
    let center = point.get_item(intern!(py, "coordinates"))?.unwrap_or_else(|| py.None().into_bound(py));
    Ok((center, meters / EARTH_RADIUS_M))
}

fn shapes<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    let allowed = if op == Op::Within { GEO_AREAS } else { GEO_ALL };
    let geom = geometry(py, leaf.name, &leaf.val, leaf.path, allowed)?;
    let inner = PyDict::new(py);
    inner.set_item(intern!(py, "$geometry"), geom)?;
    match op {
        Op::Within => field_cond(py, leaf.key, intern!(py, "$geoWithin"), inner),
        Op::Intersects => field_cond(py, leaf.key, intern!(py, "$geoIntersects"), inner),
        _ => {
            let cond = field_cond(py, leaf.key, intern!(py, "$geoIntersects"), inner)?;
            wrap(py, intern!(py, "$nor"), vec![cond])
        }
    }
}

fn within_distance<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>) -> PyResult<Bound<'py, PyDict>> {
    let (center, radians) = circle(py, leaf.name, &leaf.val, leaf.path)?;
    let sphere = PyList::new(py, [center, PyFloat::new(py, radians).into_any()])?;
    let inner = PyDict::new(py);
    inner.set_item(intern!(py, "$centerSphere"), sphere)?;
    field_cond(py, leaf.key, intern!(py, "$geoWithin"), inner)
}

fn near<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>) -> PyResult<Bound<'py, PyDict>> {
    let (op, path) = (leaf.name, leaf.path);
    if !leaf.top {
        return Err(nested_only_top(py, op, path));
    }
    // a point given as `{'$geometry': point}` reads as the bare point
    let val = unwrapped(py, &leaf.val)?;
    let legacy = point_form(py, op, &val, path, &["type", "coordinates", "maxDistance", "minDistance"])?;
    let (point, p, names) = match legacy {
        Some((point, d)) => (point, d, ["maxDistance", "minDistance"]),
        None => {
            let (p, g) = payload(py, op, &val, path, &["geometry", "max_distance", "min_distance"])?;
            (geometry(py, op, &g, path, GEO_POINT)?, p, ["max_distance", "min_distance"])
        }
    };
    let near = PyDict::new(py);
    near.set_item(intern!(py, "$geometry"), point)?;
    for (name, key) in names.iter().zip([intern!(py, "$maxDistance"), intern!(py, "$minDistance")]) {
        if let Some(m) = p.get_item(*name)? {
            near.set_item(key, need_number(py, op, name, &m, path)?)?;
        }
    }
    field_cond(py, leaf.key, intern!(py, "$near"), near)
}

pub(super) fn compile<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    match op {
        Op::Within | Op::Intersects | Op::Disjoint => shapes(py, leaf, op),
        Op::Dwithin | Op::DistanceLt => within_distance(py, leaf),
        _ => near(py, leaf),
    }
}
