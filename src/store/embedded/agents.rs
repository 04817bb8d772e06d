//! The embedded store's agent directory ([`AgentStore`]).

use async_trait::async_trait;

use super::*;
use crate::model::Agent;
use crate::store::AgentStore;

#[async_trait]
impl AgentStore for EmbeddedStore {
    async fn create_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        agent.version = 1;
        self.blocking("create_agent", move |db| {
            write(db, "create_agent", |txn| {
                let mut agents = open_table!(txn, AGENTS, "create_agent");
                insert_new(
                    &mut agents,
                    "create_agent",
                    "agent",
                    &agent.agent_id,
                    &agent,
                )
            })?;
            Ok(agent)
        })
        .await
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError> {
        self.get_json("get_agent", AGENTS, "agent", agent_id).await
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        self.blocking("update_agent", move |db| {
            write(db, "update_agent", |txn| {
                let mut agents = open_table!(txn, AGENTS, "update_agent");
                replace_versioned(&mut agents, "update_agent", &mut agent)
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
                oldest_first(&mut all);
                Ok(all)
            })
        })
        .await
    }
}
