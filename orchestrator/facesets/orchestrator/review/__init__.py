"""`facesets review EXPORT`: a local web app to look at an export and decide on it."""
