"""`facesets age extend EXPORT FACESET`: new faces slot into existing eras (see age_split)."""

from facesets.clustering.jobs.age_split import age_extend as age_extend
