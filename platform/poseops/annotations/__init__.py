"""Labels in one internal COCO-style form, importers from the formats users have, and their merge."""
