//! The embedded store's transcripts and summaries ([`TranscriptStore`]).

use super::*;
use async_trait::async_trait;

use crate::model::{Summary, Transcript};
use crate::store::{StoreError, TranscriptStore};

#[async_trait]
impl TranscriptStore for EmbeddedStore {
    async fn put_transcript(&self, transcript: &Transcript) -> Result<(), StoreError> {
        let t = transcript.clone();
        self.blocking("put_transcript", move |db| {
            write(db, "put_transcript", |txn| {
                let op = "put_transcript";
                let mut table = open_table!(txn, TRANSCRIPTS, op);
                let mut index = open_table!(txn, TRANSCRIPTS_BY_CALL, op);
                let id = t.transcript_id.as_str();
                if has_record(&table, "transcript", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "transcript",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("transcript", id, &t)?;
                table
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing transcript {id}"))?;
                let (secs, nanos) = time_key(&t.created_at);
                index
                    .insert((t.call_id.as_str(), secs, nanos, id), ())
                    .or_backend(|| format!("{op}: indexing transcript {id}"))?;
                Ok(())
            })
        })
        .await
    }

    async fn get_transcript(&self, transcript_id: &str) -> Result<Option<Transcript>, StoreError> {
        let id = transcript_id.to_owned();
        self.blocking("get_transcript", move |db| {
            read(db, "get_transcript", |txn| {
                let table = open_table!(txn, TRANSCRIPTS, "get_transcript");
                get_record(&table, "transcript", &id)
            })
        })
        .await
    }

    async fn list_transcripts_by_call(&self, call_id: &str) -> Result<Vec<Transcript>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_transcripts_by_call", move |db| {
            read(db, "list_transcripts_by_call", |txn| {
                let op = "list_transcripts_by_call";
                let index = open_table!(txn, TRANSCRIPTS_BY_CALL, op);
                let table = open_table!(txn, TRANSCRIPTS, op);
                let ids = time_index_ids(&index, "transcripts_by_call", &call_id)?;
                load_all(&table, "transcript", &ids)
            })
        })
        .await
    }

    async fn put_summary(&self, summary: &Summary) -> Result<(), StoreError> {
        let s = summary.clone();
        self.blocking("put_summary", move |db| {
            write(db, "put_summary", |txn| {
                let op = "put_summary";
                let mut table = open_table!(txn, SUMMARIES, op);
                let mut index = open_table!(txn, SUMMARIES_BY_CALL, op);
                let id = s.summary_id.as_str();
                if has_record(&table, "summary", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "summary",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("summary", id, &s)?;
                table
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing summary {id}"))?;
                let (secs, nanos) = time_key(&s.created_at);
                index
                    .insert((s.call_id.as_str(), secs, nanos, id), ())
                    .or_backend(|| format!("{op}: indexing summary {id}"))?;
                Ok(())
            })
        })
        .await
    }

    async fn get_summary(&self, summary_id: &str) -> Result<Option<Summary>, StoreError> {
        let id = summary_id.to_owned();
        self.blocking("get_summary", move |db| {
            read(db, "get_summary", |txn| {
                let table = open_table!(txn, SUMMARIES, "get_summary");
                get_record(&table, "summary", &id)
            })
        })
        .await
    }

    async fn list_summaries_by_call(&self, call_id: &str) -> Result<Vec<Summary>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_summaries_by_call", move |db| {
            read(db, "list_summaries_by_call", |txn| {
                let op = "list_summaries_by_call";
                let index = open_table!(txn, SUMMARIES_BY_CALL, op);
                let table = open_table!(txn, SUMMARIES, op);
                let ids = time_index_ids(&index, "summaries_by_call", &call_id)?;
                load_all(&table, "summary", &ids)
            })
        })
        .await
    }
}
