//! The object of an admission review, read in the same pass as the review.

use std::borrow::Cow;
use std::marker::PhantomData;

use kube::core::{ApiResource, DynamicResourceScope, ObjectMeta, Resource};
use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::PodFacts;

/// The object of a review as the decision and the patch see it, read in
/// the same pass as the review (see [`super`]). Patches target the
/// object exactly as the API server sent it, unknown fields included; the
/// object is never turned into a typed `Pod`.
pub struct PodObject<'a> {
    pub facts: PodFacts<'a>,
    /// The JSON type of an object that is not a JSON object (`5`, `"pod"`,
    /// `[]`): no patch can apply to it.
    pub not_an_object: Option<&'static str>,
    meta: ObjectMeta,
}

impl<'de: 'a, 'a> Deserialize<'de> for PodObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (facts, not_an_object) = d.deserialize_any(ObjectVisitor(PhantomData))?;
        let meta = ObjectMeta {
            name: facts.name().map(str::to_owned),
            generate_name: facts.generate_name().map(str::to_owned),
            namespace: facts.namespace().map(str::to_owned),
            ..ObjectMeta::default()
        };
        Ok(Self {
            facts,
            not_an_object,
            meta,
        })
    }
}

/// Reads a JSON object as pod facts, and anything else as its type's name.
struct ObjectVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
    type Value = (PodFacts<'a>, Option<&'static str>);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok((PodFacts::read(MapAccessDeserializer::new(map))?, None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((PodFacts::default(), Some("an array")))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok((PodFacts::default(), Some("a boolean")))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok((PodFacts::default(), Some("a number")))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok((PodFacts::default(), Some("a number")))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok((PodFacts::default(), Some("a number")))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok((PodFacts::default(), Some("a string")))
    }
}

impl Resource for PodObject<'_> {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}
