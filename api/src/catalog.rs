//! The kinds the api accepts, each with its compiled input validator.
//!
//! The built-in kinds are known from the start; kinds that workers
//! advertise in Redis (custom handlers of embedding programs) are added by
//! [`Catalog::refresh`], which the api runs periodically.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use jsonschema::Validator;
use longrun_shared::Store;
use longrun_shared::kinds::{self, KindSpec};
use longrun_shared::problem::FieldError;
use longrun_shared::store::StoreResult;
use serde_json::Value;

pub struct CompiledKind {
    pub spec: KindSpec,
    validator: Validator,
}

impl CompiledKind {
    fn compile(spec: KindSpec) -> Option<Self> {
        let validator = jsonschema::validator_for(&spec.input_schema)
            .map_err(|err| tracing::warn!(kind = %spec.kind, error = %err, "kind has an invalid input schema"))
            .ok()?;
        Some(CompiledKind { spec, validator })
    }

    /// Every way `input` breaks the schema (empty when valid), at most 50.
    pub fn check(&self, input: &Value) -> Vec<FieldError> {
        if self.validator.is_valid(input) {
            return Vec::new();
        }
        self.validator
            .iter_errors(input)
            .take(50)
            .map(|err| FieldError {
                path: err.instance_path().as_str().to_owned(),
                message: err.to_string(),
            })
            .collect()
    }
}

#[derive(Clone, Default)]
pub struct Catalog {
    kinds: Arc<RwLock<BTreeMap<String, Arc<CompiledKind>>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog of the built-in kinds.
    pub fn builtin() -> Self {
        let catalog = Catalog::default();
        catalog.add(kinds::builtin());
        catalog
    }

    fn add(&self, specs: Vec<KindSpec>) {
        let compiled: Vec<_> = specs
            .into_iter()
            .filter_map(CompiledKind::compile)
            .collect();
        let mut kinds = self
            .kinds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for kind in compiled {
            let unchanged = kinds
                .get(&kind.spec.kind)
                .is_some_and(|known| known.spec == kind.spec);
            if !unchanged {
                kinds.insert(kind.spec.kind.clone(), Arc::new(kind));
            }
        }
    }

    pub fn get(&self, kind: &str) -> Option<Arc<CompiledKind>> {
        self.kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .cloned()
    }

    pub fn specs(&self) -> Vec<KindSpec> {
        self.kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|kind| kind.spec.clone())
            .collect()
    }

    /// Adds the kinds workers advertise in Redis.
    pub async fn refresh(&self, store: &Store) -> StoreResult<()> {
        let advertised: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(store.keys().kinds())
            .query_async(&mut store.conn())
            .await?;
        let specs = advertised
            .values()
            .filter_map(|json| serde_json::from_str::<KindSpec>(json).ok())
            .filter(|spec| kinds::split_kind(&spec.kind).is_some())
            .collect();
        self.add(specs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_schemas_compile_and_check_inputs() {
        let catalog = Catalog::builtin();
        let sleep = catalog.get("demo.sleep").expect("built in");
        assert!(
            sleep
                .check(&json!({"duration_ms": 10, "steps": 2}))
                .is_empty()
        );
        let errors = sleep.check(&json!({"steps": 0, "extra": true}));
        assert!(errors.iter().any(|e| e.path == "/steps"), "{errors:?}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(catalog.get("demo.nothing").is_none());
        assert_eq!(catalog.specs().len(), kinds::builtin().len());
    }
}
