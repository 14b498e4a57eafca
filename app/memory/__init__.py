"""Memory: what Persais knows about the code it changes and what it learned doing so.

- the repository index (`chunking`, `index`, `search`): code cut along its structure, in
  Postgres full text and, with `EMBEDDINGS_MODEL`, pgvector;
- job traces (`traces`): every finished Mechanic job, shown to later jobs as examples or
  warnings;
- lessons (`lessons`): what people taught (`/lesson`, a disputed review comment, an aborted
  or rolled-back job), put into the prompts of the paths they name;
- `/ask` (`answer`): questions about the home repository, answered with `path:line`.

`service.Memory` composes them for a process.
"""
