"""The backend-independent core: versions, the commit protocol, batches."""
