"""The contract between the facesets services and their callers.

One typed request and one typed parameters object per job (declared ranges and defaults, read
by the services to validate and by the CLI to build its flags), the shared parameter groups,
typed manifests with a schema version, and the output layout. It depends on the generated
stubs alone, so the client distribution carries it.
"""
