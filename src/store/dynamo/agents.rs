//! The DynamoDB store's agent directory ([`AgentStore`]).

use super::*;
use std::collections::HashMap;

use async_trait::async_trait;

use super::codec::{codec_err, n, s, to_item};
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
        next.version = expected.checked_add(1).ok_or_else(|| {
            StoreError::backend(
                ctx.clone(),
                DynamoError::plain("agent version overflowed u64"),
            )
        })?;
        let item = to_item(&next, &[]).map_err(codec_err(ctx.clone()))?;
        // Version 0 is an agent read from an item without a version (one written in the
        // classic six-table layout, before versions).
        let (condition, names, values) = if expected == 0 {
            (
                "attribute_exists(#pk) AND attribute_not_exists(#v)",
                Self::names(&[("#pk", "agentId"), ("#v", VERSION)]),
                None,
            )
        } else {
            (
                "#v = :expected",
                Self::names(&[("#v", VERSION)]),
                Some(HashMap::from([(":expected".to_owned(), n(expected))])),
            )
        };
        let failed = self
            .conditional_put(&self.tables.agents, item, condition, names, values, &ctx)
            .await?;
        match failed {
            None => Ok(next),
            Some(old) => Err(self
                .update_failure(
                    &self.tables.agents,
                    HashMap::from([("agentId".to_owned(), s(id.as_str()))]),
                    old,
                    "agent",
                    &id,
                    expected,
                )
                .await?),
        }
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let items = self
            .scan_all(&self.tables.agents, "list_agents: scanning agents")
            .await?;
        let mut all: Vec<Agent> = items
            .iter()
            .map(|i| decode(i, &[], "agent", "agentId"))
            .collect::<Result<_, _>>()?;
        all.sort_by(|a, b| (a.created_at, &a.agent_id).cmp(&(b.created_at, &b.agent_id)));
        Ok(all)
    }
}
