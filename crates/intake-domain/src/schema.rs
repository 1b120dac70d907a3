//! Event schemas: a tenant's JSON Schema (draft 2020-12) for an event type, checked before it
//! is accepted, compiled once, and applied to the `data` of every event of that type.
//!
//! The validator is the `jsonschema` crate, without its network and file resolvers: a schema
//! can only refer to itself (`"$ref": "#/$defs/…"`), so checking an event never leaves the
//! process. Guards against hostile schemas: a size limit, a nesting limit, patterns compiled by
//! the `regex` engine (linear time: no backtracking, so no catastrophic pattern), recursion that
//! would make a check exponential refused, and a bound on how many violations one check
//! reports.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::Value;

use crate::event::{EventType, TenantId};

/// The draft every schema is read as.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The most violations one check reports; a document with more says so in the last one.
pub const MAX_VIOLATIONS: usize = 100;

/// How large and how deep a schema may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaLimits {
    /// The schema's size as compact JSON, in bytes.
    pub max_bytes: usize,
    /// How deeply objects and arrays may nest in it.
    pub max_depth: usize,
    /// The compiled size of one `pattern`, in bytes.
    pub max_pattern_bytes: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024, max_depth: 32, max_pattern_bytes: 256 * 1024 }
    }
}

/// Why a document is not a schema intake accepts; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchema(pub String);

/// A JSON Schema document that passed every check and compiled.
#[derive(Debug)]
pub struct CompiledSchema {
    document: Value,
    validator: Validator,
    /// The document's size as compact JSON, in bytes.
    size: usize,
}

impl CompiledSchema {
    /// Checks a new `document` against the limits and every rule, and compiles it.
    pub fn compile(document: Value, limits: &SchemaLimits) -> Result<Self, InvalidSchema> {
        let compiled = Self::recompile(document, limits)?;
        refuse_limits_beyond_f64(&compiled.document, "")?;
        Ok(compiled)
    }

    /// Compiles a document registered earlier: held to the limits and to the rules without
    /// which checking it could harm the server, but not to [`Self::compile`]'s rule on number
    /// keywords, which came after some documents were accepted; a stored schema stays enforced
    /// (the data's own numbers are held to an f64's range whatever the schema).
    pub fn recompile(document: Value, limits: &SchemaLimits) -> Result<Self, InvalidSchema> {
        if !(document.is_object() || document.is_boolean()) {
            return Err(InvalidSchema("a JSON Schema is an object (or true or false)".into()));
        }
        let size = serde_json::to_vec(&document).map(|bytes| bytes.len()).unwrap_or(usize::MAX);
        if size > limits.max_bytes {
            return Err(InvalidSchema(format!(
                "the schema is {size} bytes as compact JSON; the limit is {}",
                limits.max_bytes
            )));
        }
        if let Some(declared) = document.get("$schema") {
            if declared.as_str().map(|s| s.trim_end_matches('#')) != Some(DRAFT_2020_12) {
                return Err(InvalidSchema(format!(
                    "\"$schema\" is {declared}; intake reads schemas as draft 2020-12 \
                     ({DRAFT_2020_12:?}), so give that or leave \"$schema\" out"
                )));
            }
        }
        inspect(&document, "", 0, limits)?;
        refuse_exponential_recursion(&document)?;
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .with_pattern_options(
                PatternOptions::regex()
                    .size_limit(limits.max_pattern_bytes)
                    .dfa_size_limit(limits.max_pattern_bytes),
            )
            .build(&document)
            .map_err(|error| {
                InvalidSchema(format!(
                    "{error} (at {})",
                    pointer_or_root(error.instance_path().as_str())
                ))
            })?;
        Ok(Self { document, validator, size })
    }

    /// The document as registered.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The document's size as compact JSON, in bytes: with the data's size, what a check may
    /// cost is bounded by their product (exponential recursion is refused).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Every way `data` violates the schema (up to [`MAX_VIOLATIONS`]), or nothing. A number
    /// of `data` that a 64-bit float cannot represent is a violation of its own, named by its
    /// pointer, and `data` is then not checked further: the validator would judge it as
    /// infinite or 0, and say something wrong about it.
    pub fn check(&self, data: &Value) -> Result<(), Vec<SchemaViolation>> {
        let beyond = numbers_beyond_f64(data);
        if !beyond.is_empty() {
            return Err(beyond);
        }
        let mut violations: Vec<SchemaViolation> = Vec::new();
        for error in self.validator.iter_errors(data) {
            if violations.len() == MAX_VIOLATIONS {
                if let Some(last) = violations.last_mut() {
                    last.message.push_str(" (and more violations, not listed)");
                }
                break;
            }
            violations.push(SchemaViolation {
                pointer: format!("/data{}", error.instance_path().as_str()),
                schema_path: error.schema_path().as_str().to_owned(),
                message: error.to_string(),
            });
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// The numbers a schema check works with: the validator compares numbers as 64-bit floats.
const F64_RANGE: &str = "a 64-bit float: 0, or a magnitude from about 5e-324 to 1.8e308";

/// Whether a JSON number's text keeps its meaning as an f64: not infinite, and not 0 unless it
/// is 0. (Digits beyond an f64's precision are rounded, as for every number a check compares.)
fn f64_represents(text: &str) -> bool {
    // Most numbers are short integers, which no parsing is needed for.
    if text.len() <= 300 && !text.contains(['.', 'e', 'E']) {
        return true;
    }
    let written_as_zero = || {
        let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
        !mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'))
    };
    text.parse::<f64>()
        .is_ok_and(|parsed| parsed.is_finite() && (parsed != 0.0 || written_as_zero()))
}

/// A number as a message shows it: whole when short, its start and end otherwise.
fn shown_number(text: &str) -> String {
    if text.len() <= 40 {
        text.to_owned()
    } else {
        format!("{}…{}", &text[..20], &text[text.len() - 12..])
    }
}

/// The numbers of `data` that an f64 cannot represent (up to [`MAX_VIOLATIONS`]), each as a
/// violation at its pointer; walked iteratively, like the data's own checks.
fn numbers_beyond_f64(data: &Value) -> Vec<SchemaViolation> {
    let mut found: Vec<SchemaViolation> = Vec::new();
    let mut pending: Vec<(&Value, String)> = vec![(data, String::new())];
    while let Some((value, at)) = pending.pop() {
        match value {
            Value::Object(members) => pending.extend(members.iter().map(|(name, member)| {
                (member, format!("{at}/{}", name.replace('~', "~0").replace('/', "~1")))
            })),
            Value::Array(items) => pending
                .extend(items.iter().enumerate().map(|(i, item)| (item, format!("{at}/{i}")))),
            Value::Number(number) if !f64_represents(&number.to_string()) => {
                if found.len() == MAX_VIOLATIONS {
                    if let Some(last) = found.last_mut() {
                        last.message.push_str(" (and more such numbers, not listed)");
                    }
                    break;
                }
                found.push(SchemaViolation {
                    pointer: format!("/data{at}"),
                    schema_path: String::new(),
                    message: format!(
                        "{} is beyond the numbers a schema check compares ({F64_RANGE}), so the \
                         check cannot judge it; send it within that range, or as a string",
                        shown_number(&number.to_string())
                    ),
                });
            }
            _ => {}
        }
    }
    found.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    found
}

/// The keywords that compare a number of the data with the schema's.
const NUMBER_KEYWORDS: [&str; 5] =
    ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];

/// Refuses a `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` or `multipleOf`
/// that an f64 cannot represent: every comparison with it would be made with infinity or 0.
/// (The document is within the depth limit: the walk is shallow.)
fn refuse_limits_beyond_f64(value: &Value, at: &str) -> Result<(), InvalidSchema> {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                let here = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                if let Value::Number(number) = member {
                    let text = number.to_string();
                    if NUMBER_KEYWORDS.contains(&name.as_str()) && !f64_represents(&text) {
                        return Err(InvalidSchema(format!(
                            "{name} {} (at {here}) is beyond the numbers a schema check \
                             compares ({F64_RANGE}): every comparison with it would be made \
                             with infinity or 0; give a number within that range",
                            shown_number(&text)
                        )));
                    }
                }
                refuse_limits_beyond_f64(member, &here)?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                refuse_limits_beyond_f64(item, &format!("{at}/{i}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a schema whose check would take time exponential in how deeply the data nests: one
/// that refers to itself without descending into the data, or one where a subschema reached
/// recursively reaches the recursion again along more than one path at the same place in the
/// data (`{"properties":{"a":{"allOf":[{"$ref":"#"},{"$ref":"#"}]}}}` doubles the work at every
/// level: 25 levels took seconds, 31 minutes). Recursion that descends once per level (a tree)
/// stays linear and is accepted.
fn refuse_exponential_recursion(document: &Value) -> Result<(), InvalidSchema> {
    let graph = SchemaGraph::of(document);
    // Same-place edges only: a cycle there never ends, whatever the data.
    let mut state: HashMap<&str, u8> = HashMap::new();
    for node in graph.nodes.keys() {
        if let Some(at) = graph.same_place_cycle(node, &mut state) {
            return Err(InvalidSchema(format!(
                "the schema refers to itself at {} without descending into the data: checking \
                 it would never end",
                pointer_or_root(at)
            )));
        }
    }
    for component in graph.recursive_components() {
        let mut counts: HashMap<&str, u8> = HashMap::new();
        for node in &component {
            if graph.entries_into(node, &component, &mut counts) >= 2 {
                return Err(InvalidSchema(format!(
                    "at {} the schema reaches its own recursion along more than one path at the \
                     same place in the data: checking it would take time exponential in how \
                     deeply the data nests; refer to the recursive part once",
                    pointer_or_root(node)
                )));
            }
        }
    }
    Ok(())
}

/// Where evaluation goes from a subschema: same-place edges (target, whether by reference) and
/// deeper edges.
type Edges = (Vec<(String, bool)>, Vec<String>);

/// The subschemas of a document and how evaluation moves between them: at the same place in
/// the data (applicators, references) or one level deeper (properties, items …).
#[derive(Debug, Default)]
struct SchemaGraph<'a> {
    /// Each subschema (by JSON pointer) and where evaluation goes from it.
    nodes: HashMap<String, Edges>,
    anchors: HashMap<&'a str, String>,
}

impl<'a> SchemaGraph<'a> {
    fn of(document: &'a Value) -> Self {
        let mut graph = Self::default();
        graph.walk(document, String::new());
        // References by anchor name (`#name`) resolve to where the anchor is.
        for (same, _) in graph.nodes.values_mut() {
            for (target, _) in same.iter_mut() {
                if let Some(name) = target.strip_prefix('@') {
                    *target = graph.anchors.get(name).cloned().unwrap_or_default();
                }
            }
        }
        graph
    }

    fn walk(&mut self, schema: &'a Value, at: String) {
        let Value::Object(members) = schema else {
            self.nodes.entry(at).or_default();
            return;
        };
        let child = |key: &str| format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
        let mut same = Vec::new();
        let mut deeper = Vec::new();
        let mut walk_later = Vec::new();
        for (key, member) in members {
            let here = child(key);
            match (key.as_str(), member) {
                ("$ref" | "$dynamicRef", Value::String(target)) => {
                    let fragment = target.trim_start_matches('#');
                    let resolved = if fragment.is_empty() || fragment.starts_with('/') {
                        fragment.to_owned()
                    } else {
                        format!("@{fragment}")
                    };
                    same.push((resolved, true));
                }
                ("$anchor" | "$dynamicAnchor", Value::String(name)) => {
                    self.anchors.insert(name, at.clone());
                }
                ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let target = format!("{here}/{i}");
                        if key == "prefixItems" {
                            deeper.push(target.clone());
                        } else {
                            same.push((target.clone(), false));
                        }
                        walk_later.push((item, target));
                    }
                }
                ("not" | "if" | "then" | "else", _) => {
                    same.push((here.clone(), false));
                    walk_later.push((member, here));
                }
                (
                    "items"
                    | "additionalProperties"
                    | "contains"
                    | "propertyNames"
                    | "unevaluatedProperties"
                    | "unevaluatedItems",
                    _,
                ) => {
                    deeper.push(here.clone());
                    walk_later.push((member, here));
                }
                (
                    "properties" | "patternProperties" | "dependentSchemas" | "$defs",
                    Value::Object(map),
                ) => {
                    for (name, sub) in map {
                        let target =
                            format!("{here}/{}", name.replace('~', "~0").replace('/', "~1"));
                        match key.as_str() {
                            "dependentSchemas" => same.push((target.clone(), false)),
                            "$defs" => {}
                            _ => deeper.push(target.clone()),
                        }
                        walk_later.push((sub, target));
                    }
                }
                _ => {}
            }
        }
        self.nodes.insert(at, (same, deeper));
        for (sub, target) in walk_later {
            self.walk(sub, target);
        }
    }

    /// A node on a cycle of same-place edges reachable from `node`, if any (0 unseen, 1 on the
    /// path, 2 done).
    fn same_place_cycle<'g>(
        &'g self,
        node: &'g str,
        state: &mut HashMap<&'g str, u8>,
    ) -> Option<&'g str> {
        match state.get(node) {
            Some(1) => return Some(node),
            Some(_) => return None,
            None => {}
        }
        state.insert(node, 1);
        if let Some((same, _)) = self.nodes.get(node) {
            for (target, _) in same {
                if let Some(at) = self.same_place_cycle(target, state) {
                    return Some(at);
                }
            }
        }
        state.insert(node, 2);
        None
    }

    /// The groups of subschemas that reach each other (evaluation can come back to them), each
    /// with more than one member or a member that reaches itself.
    fn recursive_components(&self) -> Vec<Vec<&str>> {
        let reach = |from: &str| -> HashSet<&str> {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut pending = vec![from];
            while let Some(node) = pending.pop() {
                if let Some((same, deeper)) = self.nodes.get(node) {
                    for next in same
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .chain(deeper.iter().map(String::as_str))
                    {
                        if seen.insert(next) {
                            pending.push(next);
                        }
                    }
                }
            }
            seen
        };
        let reaches: HashMap<&str, HashSet<&str>> =
            self.nodes.keys().map(|n| (n.as_str(), reach(n))).collect();
        let mut done: HashSet<&str> = HashSet::new();
        let mut components = Vec::new();
        for node in self.nodes.keys().map(String::as_str) {
            if done.contains(node) || !reaches[node].contains(node) {
                continue;
            }
            let component: Vec<&str> = reaches[node]
                .iter()
                .copied()
                .filter(|other| reaches.get(other).is_some_and(|r| r.contains(node)))
                .collect();
            done.extend(component.iter().copied());
            components.push(component);
        }
        components
    }

    /// How many same-place paths from `node` enter `component` by a reference, counted up to 2.
    fn entries_into<'g>(
        &'g self,
        node: &'g str,
        component: &[&str],
        counts: &mut HashMap<&'g str, u8>,
    ) -> u8 {
        if let Some(&count) = counts.get(node) {
            return count;
        }
        let mut count = 0u8;
        if let Some((same, _)) = self.nodes.get(node) {
            for (target, by_reference) in same {
                if *by_reference && component.contains(&target.as_str()) {
                    count = count.saturating_add(1);
                }
                count = count.saturating_add(self.entries_into(target, component, counts)).min(2);
            }
        }
        counts.insert(node, count);
        count
    }
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the root"
    } else {
        pointer
    }
}

/// Walks the document: nesting within the limit, and every reference local.
fn inspect(
    value: &Value,
    at: &str,
    depth: usize,
    limits: &SchemaLimits,
) -> Result<(), InvalidSchema> {
    if depth > limits.max_depth {
        return Err(InvalidSchema(format!(
            "the schema nests deeper than {} levels (at {})",
            limits.max_depth,
            pointer_or_root(at)
        )));
    }
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                let here = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                if matches!(name.as_str(), "$ref" | "$dynamicRef") {
                    if let Some(target) = member.as_str() {
                        if !target.starts_with('#') {
                            return Err(InvalidSchema(format!(
                                "{name} {target:?} (at {here}) points outside the schema; intake \
                                 does not fetch schemas from elsewhere: inline it under \"$defs\" \
                                 and refer to it as \"#/$defs/…\""
                            )));
                        }
                    }
                }
                inspect(member, &here, depth + 1, limits)?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                inspect(item, &format!("{at}/{i}"), depth + 1, limits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One way an event's data violates its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where in the event, as a JSON pointer from the event's root (`/data/plan`).
    pub pointer: String,
    /// The schema keyword that failed, as a JSON pointer into the schema.
    pub schema_path: String,
    /// What is wrong, for people.
    pub message: String,
}

/// A registered version of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRecord {
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The event type it checks.
    pub event_type: EventType,
    /// 1, 2, … per tenant and event type.
    pub version: u32,
    /// When this version was registered.
    pub created_at: DateTime<Utc>,
    /// The document.
    pub schema: Value,
}

/// The outcome of registering a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaPut {
    /// The version that now holds the document.
    pub record: SchemaRecord,
    /// `false` when the latest version already was this document (nothing was created).
    pub created: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(document: Value) -> Result<CompiledSchema, InvalidSchema> {
        CompiledSchema::compile(document, &SchemaLimits::default())
    }

    #[test]
    fn every_violation_is_reported_with_its_pointer_and_keyword() {
        let schema = compile(json!({
            "type": "object",
            "required": ["plan"],
            "properties": {
                "plan": {"enum": ["free", "pro"]},
                "seats": {"type": "integer", "minimum": 1},
                "address": {"type": "object", "properties": {"country": {"pattern": "^[A-Z]{2}$"}}}
            }
        }))
        .expect("compiles");
        assert_eq!(schema.check(&json!({"plan": "pro", "seats": 3})), Ok(()));
        let violations = schema
            .check(&json!({"plan": "gold", "seats": 0, "address": {"country": "de"}}))
            .expect_err("three violations");
        let mut found: Vec<(&str, &str)> =
            violations.iter().map(|v| (v.pointer.as_str(), v.schema_path.as_str())).collect();
        found.sort_unstable();
        assert_eq!(
            found,
            [
                ("/data/address/country", "/properties/address/properties/country/pattern"),
                ("/data/plan", "/properties/plan/enum"),
                ("/data/seats", "/properties/seats/minimum"),
            ]
        );
        assert!(violations.iter().all(|v| !v.message.is_empty()));
    }

    #[test]
    fn documents_that_are_not_schemas_are_refused_with_a_reason() {
        for (document, says) in [
            (json!(5), "is an object"),
            (json!({"type": "no-such-type"}), "no-such-type"),
            (json!({"minimum": "one"}), "one"),
            (json!({"$ref": "https://example.com/s.json"}), "points outside the schema"),
            (json!({"properties": {"a": {"$ref": "other.json#/x"}}}), "/properties/a/$ref"),
            (json!({"$schema": "http://json-schema.org/draft-07/schema#"}), "draft 2020-12"),
            (json!({"pattern": "(a)\\1"}), "pattern"),
        ] {
            let error = compile(document.clone()).expect_err("refused");
            assert!(error.0.contains(says), "{document}: {error}");
        }
    }

    #[test]
    fn a_hostile_schema_is_refused_or_harmless() {
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"items": deep});
        }
        assert!(compile(deep).expect_err("too deep").0.contains("nests deeper"));
        let huge = json!({"enum": (0..20_000).map(|i| format!("value-{i}")).collect::<Vec<_>>()});
        assert!(compile(huge).expect_err("too big").0.contains("bytes"));
        // A pattern that backtracks catastrophically elsewhere runs in linear time here.
        let evil = compile(json!({"pattern": "^(a+)+$"})).expect("compiles");
        let subject = format!("{}!", "a".repeat(50_000));
        let started = std::time::Instant::now();
        assert!(evil.check(&json!(subject)).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_local_reference_works() {
        let schema = compile(json!({
            "$schema": DRAFT_2020_12,
            "$defs": {"plan": {"enum": ["free", "pro"]}},
            "properties": {"plan": {"$ref": "#/$defs/plan"}}
        }))
        .expect("compiles");
        assert!(schema.check(&json!({"plan": "pro"})).is_ok());
        let violations = schema.check(&json!({"plan": "x"})).expect_err("violates");
        assert_eq!(violations[0].pointer, "/data/plan");
    }

    #[test]
    fn no_more_than_the_cap_of_violations_is_listed() {
        let schema = compile(json!({"items": {"type": "string"}})).expect("compiles");
        let violations = schema.check(&json!((0..500).collect::<Vec<_>>())).expect_err("violates");
        assert_eq!(violations.len(), MAX_VIOLATIONS);
        assert!(violations[MAX_VIOLATIONS - 1].message.contains("and more"));
    }

    #[test]
    fn a_recursion_that_fans_out_at_one_place_is_refused_one_that_descends_is_not() {
        // Checking these would take time exponential in how deep the data nests.
        for fans_out in [
            json!({"type": "object", "properties": {"a": {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}}}),
            json!({"type": "object", "properties": {"a": {"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}}}),
            json!({"$defs": {"n": {"properties": {"a": {"oneOf": [{"$ref": "#/$defs/n"}, {"$ref": "#/$defs/m"}]}}},
                             "m": {"$ref": "#/$defs/n"}},
                   "$ref": "#/$defs/n"}),
            json!({"$ref": "#"}),
        ] {
            let refused = compile(fans_out.clone()).expect_err("refused");
            assert!(
                refused.0.contains("exponential") || refused.0.contains("itself"),
                "{fans_out}: {}",
                refused.0
            );
        }
        // A tree: each level of data is checked once per level of schema.
        for linear in [
            json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}),
            json!({"$defs": {"n": {"properties": {"x": {"$ref": "#/$defs/n"}, "y": {"$ref": "#/$defs/n"}}}},
                   "$ref": "#/$defs/n"}),
            json!({"properties": {"a": {"anyOf": [{"$ref": "#"}, {"type": "string"}]}}}),
        ] {
            compile(linear.clone()).unwrap_or_else(|e| panic!("{linear}: {}", e.0));
        }
    }

    #[test]
    fn a_number_a_check_cannot_represent_is_a_violation_naming_it_never_misjudged() {
        // Judged as an f64 that is infinite or 0, such a number got wrong verdicts (1e-400 is
        // more than 0, 1e400 is an even integer); wherever it is, it is named instead.
        for (schema, data, pointer) in [
            (r#"{"properties":{"n":{"maximum":0}}}"#, r#"{"n":1e-400}"#, "/data/n"),
            (r#"{"properties":{"n":{"maximum":10}}}"#, r#"{"n":1e400}"#, "/data/n"),
            (r#"{"properties":{"n":{"maximum":1e300}}}"#, r#"{"n":-1e400}"#, "/data/n"),
            (r#"{"properties":{"n":{"exclusiveMaximum":1e300}}}"#, r#"{"n":1e400}"#, "/data/n"),
            (r#"{"properties":{"n":{"type":"integer"}}}"#, r#"{"n":1E+400}"#, "/data/n"),
            (r#"{"items":{"multipleOf":2}}"#, r#"{"a":[1,2e400]}"#, "/data/a/1"),
            (r#"{"type":"object"}"#, r#"{"x":{"y":-0.5e-999}}"#, "/data/x/y"),
        ] {
            let compiled =
                compile(serde_json::from_str(schema).expect("schema")).expect("compiles");
            let data: Value = serde_json::from_str(data).expect("data");
            let violations = compiled.check(&data).expect_err(&format!("{schema} on {data}"));
            assert_eq!(violations.len(), 1, "{schema} on {data}: {violations:?}");
            assert_eq!(violations[0].pointer, pointer, "{schema} on {data}");
            assert!(
                violations[0].message.contains("64-bit"),
                "{schema} on {data}: {}",
                violations[0].message
            );
        }
        // Numbers within f64's range are judged as before, the largest and smallest included.
        let compiled = compile(
            serde_json::from_str(r#"{"items":{"maximum":1.7976931348623157e308}}"#)
                .expect("schema"),
        )
        .expect("compiles");
        let within = r#"[0, -0.0, 1e-320, 1.7976931348623157e308, 12345678901234567890123]"#;
        assert_eq!(compiled.check(&serde_json::from_str(within).expect("data")), Ok(()));
        let compiled =
            compile(serde_json::from_str(r#"{"items":{"maximum":1e308}}"#).expect("schema"))
                .expect("compiles");
        let over = serde_json::from_str(r#"[1e308, 1.7976931348623157e308]"#).expect("data");
        let violations = compiled.check(&over).expect_err("over the maximum");
        assert_eq!(violations[0].schema_path, "/items/maximum", "{violations:?}");
    }

    #[test]
    fn a_number_keyword_a_check_cannot_represent_is_refused_at_compile() {
        for (schema, at) in [
            (r#"{"minimum":1e-400}"#, "/minimum"),
            (r#"{"properties":{"n":{"maximum":1e400}}}"#, "/properties/n/maximum"),
            (r#"{"exclusiveMinimum":-1e309}"#, "/exclusiveMinimum"),
            (r#"{"multipleOf":1e400}"#, "/multipleOf"),
        ] {
            let refused = compile(serde_json::from_str(schema).expect("schema")).expect_err(schema);
            assert!(
                refused.0.contains(at) && refused.0.contains("64-bit"),
                "{schema}: {}",
                refused.0
            );
        }
        // Elsewhere (an enum, a default) such a number can only fail to match: kept.
        let kept = r#"{"enum":[1e1000],"default":1e-1000}"#;
        assert!(compile(serde_json::from_str(kept).expect("schema")).is_ok());
        // A schema stored before the rule stays enforced.
        let stored = serde_json::from_str(r#"{"minimum":1e-400}"#).expect("schema");
        let recompiled = CompiledSchema::recompile(stored, &SchemaLimits::default());
        assert!(recompiled.is_ok_and(|s| s.check(&serde_json::json!(-1)).is_err()));
    }

    #[test]
    fn the_attack_that_took_minutes_is_refused_before_any_event_is_checked() {
        let schema = json!({"type": "object", "properties": {"a": {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}}});
        let started = std::time::Instant::now();
        assert!(compile(schema).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
