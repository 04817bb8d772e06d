//! The DynamoDB store's transcripts and summaries ([`TranscriptStore`]).

use async_trait::async_trait;

use super::codec::{codec_err, to_item};
use super::*;
use crate::store::TranscriptStore;

#[async_trait]
impl TranscriptStore for DynamoStore {
    async fn put_transcript(&self, transcript: &Transcript) -> Result<(), StoreError> {
        let id = &transcript.transcript_id;
        let item = to_item(transcript, &[]).map_err(codec_err(format!("put_transcript {id}")))?;
        self.create_item(
            &self.tables.transcripts,
            "transcriptId",
            "transcript",
            id,
            item,
        )
        .await
    }

    async fn get_transcript(&self, transcript_id: &str) -> Result<Option<Transcript>, StoreError> {
        self.get_record(&self.tables.transcripts, transcript_id)
            .await
    }

    async fn list_transcripts_by_call(&self, call_id: &str) -> Result<Vec<Transcript>, StoreError> {
        self.list_by_call(&self.tables.transcripts, call_id).await
    }

    async fn put_summary(&self, summary: &Summary) -> Result<(), StoreError> {
        let id = &summary.summary_id;
        let item = to_item(summary, &[]).map_err(codec_err(format!("put_summary {id}")))?;
        self.create_item(&self.tables.summaries, "summaryId", "summary", id, item)
            .await
    }

    async fn get_summary(&self, summary_id: &str) -> Result<Option<Summary>, StoreError> {
        self.get_record(&self.tables.summaries, summary_id).await
    }

    async fn list_summaries_by_call(&self, call_id: &str) -> Result<Vec<Summary>, StoreError> {
        self.list_by_call(&self.tables.summaries, call_id).await
    }
}
