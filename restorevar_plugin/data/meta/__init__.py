"""Dataset metas (``datasets_meta/*.yml``): the schema (:mod:`.schema`), finding a meta by name
(:mod:`.lookup`) and the pairing scanners that turn a meta into file pairs (:mod:`.pairing`)."""
from restorevar_plugin.data.meta.lookup import (
                                                META_PATH_ENV,
                                                available_metas,
                                                default_meta_dir,
                                                load_dataset_meta,
                                                meta_search_path,
                                                read_meta_file,
                                                resolve_metas,
)
from restorevar_plugin.data.meta.pairing import (
                                                DatasetLayoutError,
                                                DatasetPairingError,
                                                ImagePair,
                                                PairingReport,
                                                find_pairs,
                                                read_lmdb_keys,
                                                scan_pairs,
)
from restorevar_plugin.data.meta.schema import (
                                                DEGRADATION_TYPES,
                                                FROM_LIST,
                                                IMAGE_EXTENSIONS,
                                                RULE_KEYS,
                                                SPLITS,
                                                TOP_KEYS,
                                                DatasetMeta,
                                                MetaSchemaError,
                                                canonical_degradation,
                                                parse_dataset_meta,
)

__all__ = ['META_PATH_ENV', 'available_metas', 'default_meta_dir', 'load_dataset_meta', 'meta_search_path',
           'read_meta_file', 'resolve_metas', 'DatasetLayoutError', 'DatasetPairingError', 'ImagePair',
           'PairingReport', 'find_pairs', 'read_lmdb_keys', 'scan_pairs', 'DEGRADATION_TYPES', 'FROM_LIST',
           'IMAGE_EXTENSIONS', 'RULE_KEYS', 'SPLITS', 'TOP_KEYS', 'DatasetMeta', 'MetaSchemaError',
           'canonical_degradation', 'parse_dataset_meta']
