"""`make bench`: each module here measures one area and prints figures with the ratio to an
anchor measured in the same run."""
