"""The status projector: builds PostgreSQL status and history views from the pipeline's topics."""
