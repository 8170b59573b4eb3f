"""Entity tables from metadata: building, diffing, migrating, publishing versions.

Every model this layer compiles may hold expressions (computed fields, rules), which the
expression language compiles; importing it registers that with the metadata compiler.
"""

import loom.expressions  # noqa: F401
