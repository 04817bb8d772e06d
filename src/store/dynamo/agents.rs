//! The DynamoDB store's agent directory ([`AgentStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::codec::{codec_err, s, to_item};
use super::*;
use crate::store::AgentStore;

#[async_trait]
impl AgentStore for DynamoStore {
    async fn create_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        agent.version = 1;
        let ctx = format!("create_agent {}", agent.agent_id);
        let item = to_item(&agent, &[]).map_err(codec_err(ctx))?;
        self.create_item(
            &self.tables.agents,
            "agentId",
            "agent",
            &agent.agent_id,
            item,
        )
        .await?;
        Ok(agent)
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError> {
        let key = HashMap::from([("agentId".to_owned(), s(agent_id))]);
        let item = self
            .get_item(&self.tables.agents, key, || format!("get_agent {agent_id}"))
            .await?;
        item.map(|i| decode(&i, &[], "agent", "agentId"))
            .transpose()
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let id = agent.agent_id.clone();
        let ctx = format!("update_agent {id}");
        let expected = agent.version;
        let mut next = agent.clone();
        next.version = bumped("agent", &id, expected)?;
        let item = to_item(&next, &[]).map_err(codec_err(ctx.clone()))?;
        let table = &self.tables.agents;
        let key = HashMap::from([("agentId".to_owned(), s(id.as_str()))]);
        let what = ("agent", id.as_str(), expected);
        if expected == 0 {
            // Version 0 is an agent read from an item without a version (one written in
            // the classic six-table layout, before versions).
            let condition = "attribute_exists(#pk) AND attribute_not_exists(#v)";
            let names = Self::names(&[("#pk", "agentId"), ("#v", VERSION)]);
            self.put_checked(table, key, item, condition, names, None, what, &ctx)
                .await?;
        } else {
            self.put_if_version(table, key, item, what, &ctx).await?;
        }
        Ok(next)
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let items = self
            .scan_all(&self.tables.agents, "list_agents: scanning agents")
            .await?;
        let mut all: Vec<Agent> = items
            .iter()
            .map(|i| decode(i, &[], "agent", "agentId"))
            .collect::<Result<_, _>>()?;
        oldest_first(&mut all);
        Ok(all)
    }
}
