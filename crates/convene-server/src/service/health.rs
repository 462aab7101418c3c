//! How the numbers are doing: instances counted by kind and state, and the ones that are not connected. Both
//! `GET /v1/health` and the `convene_instances` gauge read it, so they cannot disagree.

use std::collections::BTreeMap;

use convene_core::store::InstanceRecord;
use convene_core::{InstanceId, InstanceState};

use super::Service;
use crate::error::Result;

/// The instances' connections, as they are now.
pub struct InstanceHealth {
    /// Instances per kind and state name; every kind and state is present, zero or not, so that a state nobody is
    /// in reads 0 rather than missing.
    pub counts: BTreeMap<(&'static str, &'static str), u64>,
    /// Every instance that is not connected, oldest first, with its state.
    pub not_connected: Vec<(InstanceRecord, InstanceState)>,
}

impl InstanceHealth {
    /// The health of these instances.
    pub fn of(instances: &[(InstanceRecord, InstanceState)]) -> Self {
        let mut counts = BTreeMap::new();
        for kind in crate::connectors::kind_names() {
            for state in InstanceState::NAMES {
                counts.insert((*kind, state), 0);
            }
        }
        let mut not_connected = Vec::new();
        for (record, state) in instances {
            *counts.entry((record.kind.as_str(), state.name())).or_default() += 1;
            if !state.is_connected() {
                not_connected.push((record.clone(), state.clone()));
            }
        }
        Self { counts, not_connected }
    }
}

impl Service {
    /// The health of the instances `visible` lets through (a key's scope).
    pub async fn instance_health(&self, visible: impl Fn(InstanceId) -> bool) -> Result<InstanceHealth> {
        let mut instances = self.instances.list().await?;
        instances.retain(|(record, _)| visible(record.id));
        Ok(InstanceHealth::of(&instances))
    }
}
