//! The embedded single-file store on redb: ACID, survives `kill -9`, zero setup.
