"""What the tests share, as plain helpers: no tests and no fixtures here (the conftest.py files hold
the fixtures, thin wrappers over these modules).

The system under test: env (the settings omoi's processes get), processes (those processes),
world (one way to seed the GitHub stand-in and start omoi on a chosen database and broker),
conversation (people acting on the issue, omoi's answers read back), waits (waiting, and reading
the run from the database). What the tests feed it: plans (sample plans), agents (scripted
coding-agent models), hostile (hostile text and a hostile model), decoys (the containment tests'
world). What it runs on: services (PostgreSQL, Redis), servers (small HTTP stand-ins), gitrepos
(real git repositories), gitwork (omoi's commit clone against a hostile origin), browser (headless
Chromium), grammar (reading parsed commands).
"""
