"Install comix: metadata and requirements come from settings.ini (nbdev's single source of truth)."
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]
min_python = cfg['min_python']
py_versions = '3.10 3.11 3.12'.split()

def reqs(key): return shlex.split(cfg.get(key, ''))

setuptools.setup(
    name = cfg['lib_name'],
    license = lic[0],
    classifiers = ['Development Status :: ' + statuses[int(cfg['status'])],
                   'Intended Audience :: ' + cfg['audience'].title(),
                   'License :: ' + lic[1],
                   'Natural Language :: ' + cfg['language'].title()] +
                  ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]],
    url = cfg['git_url'],
    packages = setuptools.find_packages(include=['comix', 'comix.*']),
    include_package_data = True,
    package_data = {'comix': ['fixtures/**/*', 'fixtures/*', 'weights/*']},
    install_requires = reqs('requirements'),
    extras_require = {'dev': reqs('dev_requirements'), 'paddle': reqs('paddle_requirements')},
    dependency_links = cfg.get('dep_links','').split(),
    python_requires = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {'console_scripts': cfg.get('console_scripts','').split(),
                    'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']},
    version = cfg['version'],
    description = cfg['description'],
    keywords = cfg['keywords'],
    author = cfg['author'], author_email = cfg['author_email'],
)
