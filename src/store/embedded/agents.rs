//! The embedded store's agent directory ([`AgentStore`]).

use super::*;
use async_trait::async_trait;

use super::AGENTS;
use crate::model::Agent;
use crate::store::{AgentStore, StoreError};

#[async_trait]
impl AgentStore for EmbeddedStore {
    async fn create_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        agent.version = 1;
        self.blocking("create_agent", move |db| {
            write(db, "create_agent", |txn| {
                let mut agents = open_table!(txn, AGENTS, "create_agent");
                let id = agent.agent_id.as_str();
                if has_record(&agents, "agent", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "agent",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("agent", id, &agent)?;
                agents
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("create_agent: writing agent {id}"))?;
                Ok(())
            })?;
            Ok(agent)
        })
        .await
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError> {
        let id = agent_id.to_owned();
        self.blocking("get_agent", move |db| {
            read(db, "get_agent", |txn| {
                let agents = open_table!(txn, AGENTS, "get_agent");
                get_record(&agents, "agent", &id)
            })
        })
        .await
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        self.blocking("update_agent", move |db| {
            write(db, "update_agent", |txn| {
                let mut agents = open_table!(txn, AGENTS, "update_agent");
                let id = agent.agent_id.clone();
                let stored: Option<Agent> = get_record(&agents, "agent", &id)?;
                let Some(stored) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "agent",
                        id,
                    });
                };
                if stored.version != agent.version {
                    return Err(StoreError::VersionConflict {
                        entity: "agent",
                        id,
                        expected: agent.version,
                    });
                }
                agent.version = agent.version.checked_add(1).ok_or_else(|| {
                    StoreError::backend(
                        format!("update_agent {id}"),
                        "agent version overflowed u64",
                    )
                })?;
                let bytes = encode("agent", &id, &agent)?;
                agents
                    .insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("update_agent: writing agent {id}"))?;
                Ok(())
            })?;
            Ok(agent)
        })
        .await
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.blocking("list_agents", |db| {
            read(db, "list_agents", |txn| {
                let agents = open_table!(txn, AGENTS, "list_agents");
                let mut all: Vec<Agent> = all_records(&agents, "agent")?;
                all.sort_by(|a, b| (a.created_at, &a.agent_id).cmp(&(b.created_at, &b.agent_id)));
                Ok(all)
            })
        })
        .await
    }
}
