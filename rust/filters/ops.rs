//! The operator vocabulary of the compiler, parsed once per leaf into [`Op`] (aliases
//! resolved); each family compiles in its own file. Twin: `specifications/operators.py`.

/// How a string operator builds its pattern.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pattern {
    Contains,
    StartsWith,
    EndsWith,
    Like,
    Regex,
}

/// A built-in operator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    // compare.rs
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    IsNull,
    IsNotNull,
    IsEmpty,
    IsNotEmpty,
    // sets.rs
    In,
    NotIn,
    All,
    Between,
    NotBetween,
    // strings.rs: the pattern, its `$options`, and whether the match is negated
    Text(Pattern, &'static str, bool),
    // documents.rs
    JsonContains,
    JsonHasKey,
    JsonPathExists,
    JsonHasAny,
    JsonHasAll,
    Size,
    // geo.rs
    Within,
    Intersects,
    Disjoint,
    DistanceLt,
    Dwithin,
    Near,
    // text.rs
    Fts,
    FtsPhrase,
    /// Known, but MongoDB cannot express it exactly (the hint says what to use instead).
    NoEquivalent(&'static str),
}

/// The canonical name of an alias (`>=` -> `gte`), or the name itself.
pub fn alias(op: &str) -> &str {
    match op {
        "=" => "eq",
        "!=" => "ne",
        ">" => "gt",
        ">=" => "gte",
        "<" => "lt",
        "<=" => "lte",
        _ => op,
    }
}

fn no_equivalent(op: &str) -> Option<&'static str> {
    Some(match op {
        "json_contained_by" => "MongoDB cannot test that a document's keys are a subset of a value without $expr; use json_contains on the keys you need",
        "contains_geom" => "MongoDB has no 'geometry contains value' operator; use within with the roles swapped",
        "touches" => "MongoDB has no DE-9IM 'touches' predicate; use intersects",
        "crosses" => "MongoDB has no DE-9IM 'crosses' predicate; use intersects",
        "overlaps" => "MongoDB has no DE-9IM 'overlaps' predicate; use intersects",
        "geom_equals" => "MongoDB has no spatial equality; use eq to match the exact GeoJSON document",
        "bbox_intersects" => "MongoDB has no bounding-box-of-geometry test; use intersects with a Polygon",
        _ => return None,
    })
}

fn text_op(op: &str) -> Option<Op> {
    let (pattern, options, negated) = match op {
        "contains" => (Pattern::Contains, "", false),
        "icontains" => (Pattern::Contains, "i", false),
        "startswith" => (Pattern::StartsWith, "", false),
        "istartswith" => (Pattern::StartsWith, "i", false),
        "endswith" => (Pattern::EndsWith, "", false),
        "iendswith" => (Pattern::EndsWith, "i", false),
        "like" => (Pattern::Like, "s", false),
        "ilike" => (Pattern::Like, "is", false),
        "not_like" => (Pattern::Like, "s", true),
        "regex" => (Pattern::Regex, "", false),
        "iregex" => (Pattern::Regex, "i", false),
        _ => return None,
    };
    Some(Op::Text(pattern, options, negated))
}

impl Op {
    /// The built-in operator named `name` (canonical, aliases already resolved), if any.
    pub fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "is_null" => Op::IsNull,
            "is_not_null" => Op::IsNotNull,
            "is_empty" => Op::IsEmpty,
            "is_not_empty" => Op::IsNotEmpty,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "all" => Op::All,
            "between" => Op::Between,
            "not_between" => Op::NotBetween,
            "json_contains" => Op::JsonContains,
            "json_has_key" => Op::JsonHasKey,
            "json_path_exists" => Op::JsonPathExists,
            "json_has_any" => Op::JsonHasAny,
            "json_has_all" => Op::JsonHasAll,
            "size" => Op::Size,
            "within" => Op::Within,
            "intersects" => Op::Intersects,
            "disjoint" => Op::Disjoint,
            "distance_lt" => Op::DistanceLt,
            "dwithin" => Op::Dwithin,
            "near" => Op::Near,
            "fts" => Op::Fts,
            "fts_phrase" => Op::FtsPhrase,
            _ => return text_op(name).or_else(|| no_equivalent(name).map(Op::NoEquivalent)),
        })
    }

    /// Whether the operator works without a `val` (`is_null` alone means `is_null: True`).
    pub fn value_optional(self) -> bool {
        matches!(self, Op::IsNull | Op::IsNotNull | Op::IsEmpty | Op::IsNotEmpty)
    }

    /// Whether the compiled condition may be an `$and` / `$or` group (so a parent group
    /// must look inside before flattening it).
    pub fn may_emit_group(self) -> bool {
        matches!(self, Op::JsonContains | Op::JsonHasKey | Op::JsonHasAny | Op::JsonHasAll | Op::In | Op::All)
    }
}

/// Whether `name` (canonical) is a built-in operator.
pub fn is_builtin(name: &str) -> bool {
    Op::parse(name).is_some()
}

/// Operators whose `val` may be left out.
pub fn is_value_optional(name: &str) -> bool {
    Op::parse(name).is_some_and(Op::value_optional)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_canonical_names() {
        assert_eq!(alias(">="), "gte");
        assert_eq!(alias("!="), "ne");
        assert_eq!(alias("eq"), "eq");
        assert_eq!(Op::parse(alias("<")), Some(Op::Lt));
    }

    #[test]
    fn every_family_parses() {
        assert_eq!(Op::parse("ilike"), Some(Op::Text(Pattern::Like, "is", false)));
        assert_eq!(Op::parse("not_like"), Some(Op::Text(Pattern::Like, "s", true)));
        assert!(matches!(Op::parse("touches"), Some(Op::NoEquivalent(hint)) if hint.contains("intersects")));
        assert_eq!(Op::parse("fts_phrase"), Some(Op::FtsPhrase));
        assert_eq!(Op::parse("bogus"), None);
        assert_eq!(Op::parse("and"), None, "groups are not leaf operators");
    }

    #[test]
    fn value_optional_is_the_null_family() {
        assert!(is_value_optional("is_not_empty"));
        assert!(!is_value_optional("eq"));
        assert!(!is_value_optional("bogus"));
    }

    #[test]
    fn every_documented_operator_is_built_in() {
        let names = [
            "eq",
            "ne",
            "gt",
            "gte",
            "lt",
            "lte",
            "in",
            "not_in",
            "all",
            "between",
            "not_between",
            "contains",
            "icontains",
            "startswith",
            "istartswith",
            "endswith",
            "iendswith",
            "like",
            "ilike",
            "not_like",
            "regex",
            "iregex",
            "is_null",
            "is_not_null",
            "is_empty",
            "is_not_empty",
            "json_contains",
            "json_contained_by",
            "json_has_key",
            "json_has_any",
            "json_has_all",
            "json_path_exists",
            "size",
            "within",
            "intersects",
            "disjoint",
            "contains_geom",
            "touches",
            "crosses",
            "overlaps",
            "geom_equals",
            "bbox_intersects",
            "distance_lt",
            "dwithin",
            "near",
            "fts",
            "fts_phrase",
        ];
        assert!(names.iter().all(|n| is_builtin(n)));
        assert_eq!(names.len(), 47);
    }
}
