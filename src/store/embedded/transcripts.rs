//! The embedded store's transcripts and summaries ([`TranscriptStore`]).

use async_trait::async_trait;

use super::*;
use crate::model::{Summary, Transcript};
use crate::store::TranscriptStore;

impl EmbeddedStore {
    /// Writes a new record of a call and lists it under the call in `index`;
    /// `AlreadyExists` (writing nothing) if the id is taken.
    async fn put_of_call<T>(
        &self,
        op: &'static str,
        def: RecordTable,
        index: TimeIndex,
        record: T,
        call_id: String,
    ) -> Result<(), StoreError>
    where
        T: Record + Serialize + Send + 'static,
    {
        self.blocking(op, move |db| {
            write(db, op, |txn| {
                let mut table = open_table!(txn, def, op);
                let mut by_call = open_table!(txn, index, op);
                let id = record.id();
                insert_new(&mut table, op, T::ENTITY, id, &record)?;
                index_by_time(
                    &mut by_call,
                    op,
                    T::ENTITY,
                    &call_id,
                    &record.created_at(),
                    id,
                )
            })
        })
        .await
    }
}

#[async_trait]
impl TranscriptStore for EmbeddedStore {
    async fn put_transcript(&self, transcript: &Transcript) -> Result<(), StoreError> {
        let call_id = transcript.call_id.clone();
        self.put_of_call(
            "put_transcript",
            TRANSCRIPTS,
            TRANSCRIPTS_BY_CALL,
            transcript.clone(),
            call_id,
        )
        .await
    }

    async fn get_transcript(&self, transcript_id: &str) -> Result<Option<Transcript>, StoreError> {
        self.get_json("get_transcript", TRANSCRIPTS, "transcript", transcript_id)
            .await
    }

    async fn list_transcripts_by_call(&self, call_id: &str) -> Result<Vec<Transcript>, StoreError> {
        let op = "list_transcripts_by_call";
        self.list_by_time_index(op, TRANSCRIPTS_BY_CALL, TRANSCRIPTS, "transcript", call_id)
            .await
    }

    async fn put_summary(&self, summary: &Summary) -> Result<(), StoreError> {
        let call_id = summary.call_id.clone();
        self.put_of_call(
            "put_summary",
            SUMMARIES,
            SUMMARIES_BY_CALL,
            summary.clone(),
            call_id,
        )
        .await
    }

    async fn get_summary(&self, summary_id: &str) -> Result<Option<Summary>, StoreError> {
        self.get_json("get_summary", SUMMARIES, "summary", summary_id)
            .await
    }

    async fn list_summaries_by_call(&self, call_id: &str) -> Result<Vec<Summary>, StoreError> {
        let op = "list_summaries_by_call";
        self.list_by_time_index(op, SUMMARIES_BY_CALL, SUMMARIES, "summary", call_id)
            .await
    }
}
