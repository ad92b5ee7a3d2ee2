"""What the client library, the services and the CLI share beyond the contract: the folder
writer lock, token files and the logging set-up with secret redaction."""
